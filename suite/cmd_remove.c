/* smudge remove / smudge methods: placeholder until the implementation lands. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

int cmd_remove(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "smudge remove: not implemented yet\n");
    return CLI_FAIL;
}

int cmd_methods(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "smudge methods: not implemented yet\n");
    return CLI_FAIL;
}
