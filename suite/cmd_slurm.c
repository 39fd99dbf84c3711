/* smudge slurm (being written). */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

int cmd_slurm(int argc, char **argv) {
    fprintf(stderr, "smudge slurm: not implemented yet\n");
    return CLI_FAIL;
}
