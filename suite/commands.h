/* The smudge subcommands. Each takes the full argv (argv[1] is its name),
 * prints its own --help, and returns an exit code from cli.h. */
#ifndef SMUDGE_COMMANDS_H
#define SMUDGE_COMMANDS_H

typedef struct smudge_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} smudge_command;

int cmd_score(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_zoo(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_table(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_results(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_slurm(int argc, char **argv);
int cmd_implant(int argc, char **argv);
int cmd_fingerprint(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_methods(int argc, char **argv);
int cmd_extract(int argc, char **argv);

#endif
