/* Entry points of suite/cmd_run.c used by other commands. */
#ifndef SU_RUN_H
#define SU_RUN_H

/* smudge bench dispatch (argv[2] == "dispatch"). */
int su_bench_dispatch(int argc, char **argv);

#endif
