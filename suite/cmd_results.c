/* smudge table / merge / plot / results: the result-store commands
 * (being written; see results/results.h). */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

static int not_yet(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2)) {
        printf("usage: smudge %s ... (not implemented yet)\n", argv[1]);
        return CLI_OK;
    }
    fprintf(stderr, "smudge %s: not implemented yet\n", argv[1]);
    return CLI_FAIL;
}

int cmd_table(int argc, char **argv) { return not_yet(argc, argv); }
int cmd_merge(int argc, char **argv) { return not_yet(argc, argv); }
int cmd_plot(int argc, char **argv) { return not_yet(argc, argv); }
int cmd_results(int argc, char **argv) { return not_yet(argc, argv); }
