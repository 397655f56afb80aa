/*
 * A minimal Fluent Bit stand-in: it loads the plugin with dlopen and calls
 * its exports the way Fluent Bit's Go proxy does (src/proxy/go/go.c and
 * src/flb_plugin_proxy.c): register, init with properties, the collect
 * timer, cleanup after each non-empty batch, pause and resume, exit.
 *
 * usage: host PLUGIN.so SECONDS key=value... [-- key=value...]
 * Each "--" starts another input instance. LEGACY=1 in the environment lays
 * the structures out as Fluent Bit before 4.1 does (no Ctx callbacks).
 * Batches go to stdout as frames: uint32 instance, uint64 length (little
 * endian), then the bytes. Lifecycle lines go to stderr.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>
#include <time.h>

struct flb_plugin_proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
    int event_type;
};

struct flb_api {
    char *(*output_get_property)(char *, void *);
    char *(*input_get_property)(char *, void *);
    void *(*output_get_cmt_instance)(void *);
    void *(*input_get_cmt_instance)(void *);
    void (*log_print)(int, const char *, int, const char *, ...);
    int (*input_log_check)(void *, int);
    int (*output_log_check)(void *, int);
};

struct input_proxy_context { /* 4.1 and later */
    int coll_fd;
    void *remote_context;
    void *proxy;
};

struct go_input_plugin { /* 4.1 and later */
    char *name;
    struct flb_api *api;
    void *i_ins;
    struct input_proxy_context *context;
    void *cb_init;
    void *cb_collect;
    void *cb_collect_ctx;
    void *cb_cleanup;
    void *cb_cleanup_ctx;
    void *cb_exit;
};

struct go_input_plugin_legacy { /* before 4.1 */
    char *name;
    struct flb_api *api;
    void *i_ins;
    void *context;
    void *cb_init;
    void *cb_collect;
    void *cb_cleanup;
    void *cb_exit;
};

struct props {
    int n;
    char **kv; /* "key=value" */
};

static char *get_property(char *key, void *ins)
{
    struct props *p = ins;
    size_t kl = strlen(key);
    for (int i = 0; i < p->n; i++) {
        if (strncasecmp(p->kv[i], key, kl) == 0 && p->kv[i][kl] == '=') {
            return p->kv[i] + kl + 1;
        }
    }
    return NULL;
}

/* Fluent Bit's logger: the plugin's lines arrive here, at or above the
 * log_level the instance asks for (LOG_LEVEL in the environment, default
 * info = 3). */
static void log_print(int level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    (void) file;
    (void) line;
    fprintf(stderr, "flb-log level=%d ", level);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int input_log_check(void *ins, int level)
{
    (void) ins;
    return level <= 3;
}

typedef int (*register_fn)(void *);
typedef int (*init_fn)(void *);
typedef int (*collect_ctx_fn)(void *, void **, size_t *);
typedef int (*collect_fn)(void **, size_t *);
typedef int (*cleanup_ctx_fn)(void *, void *);
typedef int (*cleanup_fn)(void *);
typedef int (*exit_fn)(void);
typedef void (*void_fn)(void);

static void *sym(void *h, const char *name, int required)
{
    void *f = dlsym(h, name);
    if (!f && required) {
        fprintf(stderr, "missing symbol %s\n", name);
        exit(2);
    }
    return f;
}

static void frame(uint32_t inst, void *data, size_t size)
{
    uint64_t len = size;
    fwrite(&inst, 4, 1, stdout);
    fwrite(&len, 8, 1, stdout);
    fwrite(data, 1, size, stdout);
    fflush(stdout);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: host PLUGIN.so SECONDS key=value... [-- key=value...]\n");
        return 2;
    }
    int legacy = getenv("LEGACY") && strcmp(getenv("LEGACY"), "1") == 0;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    int seconds = atoi(argv[2]);

    struct flb_plugin_proxy_def def;
    memset(&def, 0, sizeof(def));
    if (((register_fn) sym(h, "FLBPluginRegister", 1))(&def) != 0) {
        fprintf(stderr, "register failed\n");
        return 1;
    }
    fprintf(stderr, "registered name=%s type=%d proxy=%d\n", def.name, def.type, def.proxy);

    struct flb_api api = {NULL, get_property, NULL, NULL, log_print, input_log_check, NULL};
    init_fn init = sym(h, "FLBPluginInit", 1);
    collect_ctx_fn collect_ctx = sym(h, "FLBPluginInputCallbackCtx", 0);
    collect_fn collect = sym(h, "FLBPluginInputCallback", 1);
    cleanup_ctx_fn cleanup_ctx = sym(h, "FLBPluginInputCleanupCallbackCtx", 0);
    cleanup_fn cleanup = sym(h, "FLBPluginInputCleanupCallback", 1);
    exit_fn plugin_exit = sym(h, "FLBPluginExit", 1);
    void_fn pause_fn = sym(h, "FLBPluginInputPause", 1);
    void_fn resume_fn = sym(h, "FLBPluginInputResume", 1);

    /* Split the instance properties on "--". */
    struct props props[8];
    struct input_proxy_context ctx[8];
    int n = 0;
    props[0].n = 0;
    props[0].kv = &argv[3];
    for (int i = 3; i < argc && n < 8; i++) {
        if (strcmp(argv[i], "--") == 0) {
            n++;
            props[n].n = 0;
            props[n].kv = &argv[i + 1];
            continue;
        }
        props[n].n++;
    }
    n++;

    int ok[8] = {0};
    for (int i = 0; i < n; i++) {
        int ret;
        memset(&ctx[i], 0, sizeof(ctx[i]));
        if (legacy) {
            struct go_input_plugin_legacy p = {def.name, &api, &props[i], &ctx[i], init, collect, cleanup, plugin_exit};
            ret = init(&p);
        } else {
            struct go_input_plugin p = {def.name, &api, &props[i], &ctx[i], init, collect, collect_ctx, cleanup, cleanup_ctx, plugin_exit};
            ret = init(&p);
        }
        ok[i] = ret > 0;
        fprintf(stderr, "init %d ret=%d remote_context=%s\n", i, ret, ctx[i].remote_context ? "set" : "null");
    }

    /* The collect timer: every instance is called in turn; a batch is
     * followed by cleanup, which frees it. */
    int ticks = seconds * 10;
    for (int t = 0; t < ticks; t++) {
        if (t == ticks / 2) {
            pause_fn();
            int leaked = 0;
            for (int r = 0; r < 20; r++) {
                for (int i = 0; i < n; i++) {
                    void *data = NULL;
                    size_t size = 0;
                    if (!ok[i]) continue;
                    if (legacy) collect(&data, &size);
                    else collect_ctx(ctx[i].remote_context, &data, &size);
                    if (size > 0) leaked++;
                }
                nap_ms(50);
            }
            fprintf(stderr, "paused batches=%d\n", leaked);
            resume_fn();
        }
        for (int i = 0; i < n; i++) {
            void *data = NULL;
            size_t size = 0;
            if (!ok[i]) continue;
            if (legacy) collect(&data, &size);
            else collect_ctx(ctx[i].remote_context, &data, &size);
            if (size == 0) continue;
            frame(i, data, size);
            if (legacy) cleanup(data);
            else cleanup_ctx(ctx[i].remote_context, data);
        }
        nap_ms(100);
    }
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "exit %d ret=%d\n", i, plugin_exit());
    }
    /* After exit, callbacks must be harmless. */
    void *data = NULL;
    size_t size = 0;
    if (!legacy && ok[0]) collect_ctx(ctx[0].remote_context, &data, &size);
    fprintf(stderr, "after exit size=%zu\n", size);
    ((void (*)(void *)) sym(h, "FLBPluginUnregister", 1))(&def);
    fprintf(stderr, "done\n");
    return 0;
}
