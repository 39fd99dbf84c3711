/* The one registry of removal methods: the built-in array, then plugins
 * loaded at run time (the only mutable global state in methods/). */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "method.h"

extern const sm_method sm_method_none;
extern const sm_method sm_method_meraser, sm_method_meraser_erase_lora, sm_method_incremental_ft;
extern const sm_method sm_method_prune, sm_method_task_arithmetic, sm_method_dare, sm_method_cleangen, sm_method_token_forcing;

static const sm_method *const builtin[] = {
    &sm_method_none,
    &sm_method_meraser, &sm_method_meraser_erase_lora, &sm_method_incremental_ft,
    &sm_method_prune, &sm_method_task_arithmetic, &sm_method_dare, &sm_method_cleangen, &sm_method_token_forcing,
};
static const int n_builtin = sizeof builtin / sizeof builtin[0];

enum { MAX_PLUGINS = 64 };
static const sm_method *plugins[MAX_PLUGINS];
static int n_plugins;

int sm_method_count(void) { return n_builtin + n_plugins; }

const sm_method *sm_method_at(int i) {
    if (i < 0) return NULL;
    if (i < n_builtin) return builtin[i];
    if (i < n_builtin + n_plugins) return plugins[i - n_builtin];
    return NULL;
}

const sm_method *sm_method_find(const char *name) {
    for (int i = 0; i < sm_method_count(); i++)
        if (strcmp(sm_method_at(i)->name, name) == 0) return sm_method_at(i);
    return NULL;
}

/* A table entry must be usable before it is admitted: a plugin is
 * untrusted code's data, so check what we can. */
static int check_method(const sm_method *m, const char *path, lm_err *err) {
    if (m->abi != SM_METHOD_ABI)
        return lm_errf(err, "%s: built for method ABI %d, this smudge speaks "
                            "ABI %d; rebuild it against this smudge's methods/method.h",
                       path, m->abi, SM_METHOD_ABI);
    if (!m->name || !m->name[0] || !m->run || !m->description)
        return lm_errf(err, "%s: method has no name, description or run function", path);
    if (m->n_params < 0 || m->n_params > SM_MAX_PARAMS || (m->n_params && !m->params))
        return lm_errf(err, "%s: method '%s' declares %d parameters (at most %d)",
                       path, m->name, m->n_params, SM_MAX_PARAMS);
    if (m->output == SM_OUT_POLICY && (!m->build_policy || !m->free_policy))
        return lm_errf(err, "%s: policy method '%s' lacks build_policy/free_policy",
                       path, m->name);
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].name || !m->params[i].def)
            return lm_errf(err, "%s: method '%s' parameter %d has no name or default",
                           path, m->name, i);
    /* Defaults must pass the method's own validation. */
    sm_params p;
    if (sm_params_parse(m, NULL, 0, &p, err))
        return lm_err_prefix(err, "%s: method '%s' default: ", path, m->name);
    return 0;
}

int sm_plugin_load(const char *path, lm_err *err) {
    if (n_plugins == MAX_PLUGINS)
        return lm_errf(err, "%s: at most %d plugins", path, MAX_PLUGINS);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return lm_errf(err, "cannot load plugin %s: %s", path, dlerror());
    const sm_method *m = dlsym(h, "smudge_method");
    if (!m) {
        dlclose(h);
        return lm_errf(err, "%s exports no 'smudge_method' symbol (see examples/)", path);
    }
    if (check_method(m, path, err)) {
        dlclose(h);
        return -1;
    }
    if (sm_method_find(m->name)) {
        lm_errf(err, "%s: a method named '%s' is already registered", path, m->name);
        dlclose(h);
        return -1;
    }
    /* The handle stays open for the life of the process: the table lives in it. */
    plugins[n_plugins++] = m;
    return 0;
}

int sm_plugin_load_env(lm_err *err) {
    const char *env = getenv("SMUDGE_PLUGIN_PATH");
    if (!env || !*env) return 0;
    char *paths = strdup(env);
    if (!paths) return lm_errf(err, "out of memory");
    int rc = 0;
    for (char *save = NULL, *dir = strtok_r(paths, ":", &save); dir && rc == 0;
         dir = strtok_r(NULL, ":", &save)) {
        DIR *d = opendir(dir);
        if (!d) continue; /* a missing directory in a search path is not an error */
        struct dirent *e;
        while (rc == 0 && (e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (n < 4 || strcmp(e->d_name + n - 3, ".so") != 0) continue;
            char full[4096];
            snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
            rc = sm_plugin_load(full, err);
        }
        closedir(d);
    }
    free(paths);
    return rc;
}

const sm_data *sm_input_data(const sm_input *in, const char *name) {
    for (int i = 0; i < in->n_data; i++)
        if (strcmp(in->data[i].name, name) == 0) return &in->data[i];
    return NULL;
}

void sm_wanted_data(const char *entry, char *name, size_t cap, int *optional) {
    size_t n = strlen(entry);
    *optional = n > 0 && entry[n - 1] == '?';
    if (*optional) n--;
    if (n >= cap) n = cap - 1;
    memcpy(name, entry, n);
    name[n] = '\0';
}
