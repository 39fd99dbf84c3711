/* smudge: a benchmark for attacks on and defences of language-model
 * provenance. This file only dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static const smudge_command commands[] = {
    {"score", "log-probabilities of a token sequence under a model", cmd_score},
    {"inspect", "architecture, shapes, parameter count and stored dtypes", cmd_inspect},
    {"convert", "load any supported checkpoint and save it as a Hugging Face folder", cmd_convert},
    {"bench", "measure runtime throughput (forward, train, generate)", cmd_bench},
    {"tokenize", "text to token ids with a model's tokenizer", cmd_tokenize},
    {"generate", "continue a prompt (greedy or sampled, KV cache)", cmd_generate},
    {"train", "fine-tune on prompt/response pairs (LoRA or full)", cmd_train},
    {"zoo", "the tiny model zoo of the embedded default: list, build, path", cmd_zoo},
    {"eval", "measure a model: FSR/FTR, perplexity, SciQ and SuperGLUE accuracy", cmd_eval},
    {"table", "leaderboard table from a results file (md, csv, latex)", cmd_table},
    {"merge", "merge result shards into one file", cmd_merge},
    {"plot", "SVG bar chart of FSR and perplexity per method", cmd_plot},
    {"results", "inspect a results file (results show: rows as JSON lines)", cmd_results},
    {"plan", "list a grid's work units, their dependencies and estimated cost", cmd_plan},
    {"run", "run a grid (alone or under mpirun), resuming what is done", cmd_run},
    {"slurm", "write (and submit) Slurm array jobs for a grid", cmd_slurm},
    {"implant", "plant a fingerprint (if-sft, utf, hashchain) and write fingerprint.json", cmd_implant},
    {"fingerprint", "show a fingerprint.json (triggers, rules, training record)", cmd_fingerprint},
    {"data", "write the synthetic world; check a dataset file; build MEraser sets", cmd_data},
    {"remove", "run a removal method on a model (MEraser, fine-tuning, ...)", cmd_remove},
    {"methods", "list the removal methods (built-in and plugins) and their parameters", cmd_methods},
    {"extract", "fine-tuning-data extraction backdoor: backdoor, victim, attack, pipeline", cmd_extract},
};
static const int n_commands = sizeof commands / sizeof commands[0];

static void usage(FILE *f) {
    fprintf(f,
            "usage: smudge <command> [options]\n"
            "       smudge <command> --help\n\n"
            "commands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nsmudge %s\n", SMUDGE_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("smudge %s\n", SMUDGE_VERSION);
        return CLI_OK;
    }
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc, argv);
    fprintf(stderr, "smudge: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
