/* smudge run and smudge plan (being written). */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

int cmd_run(int argc, char **argv) {
    fprintf(stderr, "smudge run: not implemented yet\n");
    return CLI_FAIL;
}

int cmd_plan(int argc, char **argv) {
    fprintf(stderr, "smudge plan: not implemented yet\n");
    return CLI_FAIL;
}
