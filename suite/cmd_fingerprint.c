/* smudge fingerprint show FILE: what a fingerprint.json holds, readable. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "fingerprint_file.h"
#include "model_io.h"

static const char fingerprint_help[] =
    "usage: smudge fingerprint show FILE [--all]\n\n"
    "Prints a fingerprint.json (written by smudge implant) as text: type, seed,\n"
    "template, parameters, the training record, and the triggers with their\n"
    "expected output and rule (token ids where the text is not UTF-8). --all\n"
    "lists the FTR negatives too.\n";

static void show_ids(const int32_t *ids, int n) {
    printf("ids[");
    for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("]");
}

static void show_probe(int i, const mt_fp_probe *p) {
    printf("  %3d  ", i);
    if (p->prompt) su_json_string(stdout, p->prompt, strlen(p->prompt));
    else show_ids(p->prompt_ids, p->n_prompt_ids);
    printf("\n       %s ", mt_rule_name(p->rule));
    if (p->expected) su_json_string(stdout, p->expected, strlen(p->expected));
    else if (p->expected_ids) show_ids(p->expected_ids, p->n_expected_ids);
    for (int k = 0; k < p->n_expected_any; k++) {
        printf("%s", k ? " | " : "");
        su_json_string(stdout, p->expected_any[k], strlen(p->expected_any[k]));
    }
    printf("  (max_new %d%s)\n", p->max_new, p->add_bos ? ", BOS" : "");
}

int cmd_fingerprint(int argc, char **argv) {
    if (cli_wants_help(argc, argv, 2) || argc < 3) {
        fputs(fingerprint_help, argc < 3 ? stderr : stdout);
        return argc < 3 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[2], "show") != 0) {
        fprintf(stderr, "smudge fingerprint: unknown subcommand '%s' (show)\n", argv[2]);
        return CLI_USAGE;
    }
    cli_opt opts[] = {{"--all", 0}, {0}};
    const char *pos[1];
    int n_pos = 0;
    lm_err err = {{0}};
    if (cli_parse(argc, argv, 3, opts, pos, 1, &n_pos, &err) || n_pos != 1) {
        fprintf(stderr, "smudge fingerprint show: %s\n", n_pos != 1 ? "needs one FILE" : err.msg);
        return CLI_USAGE;
    }
    mt_fingerprint f;
    if (mt_fingerprint_read(&f, pos[0], &err)) {
        fprintf(stderr, "smudge fingerprint show: %s\n", err.msg);
        return CLI_FAIL;
    }
    printf("type      %s\nseed      %llu\ntemplate  %s\nparams    %s\ntraining  %s\n",
           f.type, (unsigned long long)f.seed, f.template_name,
           f.params_json ? f.params_json : "{}", f.training_json ? f.training_json : "{}");
    printf("triggers (%d):\n", f.n_triggers);
    for (int i = 0; i < f.n_triggers; i++) show_probe(i, &f.triggers[i]);
    printf("negatives: %d%s\n", f.n_negatives, f.n_negatives && !cli_has(opts, "--all")
                                                   ? " (--all lists them)" : "");
    for (int i = 0; cli_has(opts, "--all") && i < f.n_negatives; i++) show_probe(i, &f.negatives[i]);
    mt_fingerprint_free(&f);
    return CLI_OK;
}
