/*
 * A minimal Fluent Bit stand-in: it loads the plugin with dlopen and calls
 * its exports the way Fluent Bit's Go proxy does (src/proxy/go/go.c and
 * src/flb_plugin_proxy.c): register, init with properties, the collect
 * timer, cleanup after each non-empty batch, pause and resume, exit.
 *
 * usage: host PLUGIN.so SECONDS key=value... [-- key=value...]
 * Each "--" starts another input instance.
 *
 * Environment:
 *   LEGACY=1   lays the structures out as Fluent Bit before 4.1 does (no
 *              Ctx callbacks).
 *   THREADS=1  runs each instance on a thread of its own, as Fluent Bit
 *              runs a Go input (src/flb_input_thread.c): init, collect,
 *              cleanup, pause, resume and exit all on that thread, inits
 *              one after the other, exits in reverse order, each joined
 *              before the next while the others keep collecting. Without
 *              it every call is made from the main thread (threaded off).
 *   REFUSE=N   flb_input_log_append refuses every Nth batch, as Fluent
 *              Bit does when the input's ring buffer stays full.
 *
 * Built with -rdynamic, the host exports flb_input_log_append and
 * flb_input_name as Fluent Bit does, and the plugin appends its batches
 * itself; built without, the plugin returns them and the host appends
 * them and calls cleanup, as the proxy does. Built with -DSINCE_403 as
 * well, it also exports flb_engine_stop_ingestion and
 * flb_storage_chunk_count, which came with Fluent Bit 4.0.3 (the plugin
 * only looks them up).
 *
 * Batches go to stdout as frames: uint32 instance, uint64 length (little
 * endian), then the bytes. Lifecycle lines go to stderr.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>
#include <time.h>

#define MAX_INSTANCES 8

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

/* The input instance as far as the host knows it: its properties. */
struct props {
    int n;
    char **kv; /* "key=value" */
    char name[64];
};

typedef int (*register_fn)(void *);
typedef int (*init_fn)(void *);
typedef int (*collect_ctx_fn)(void *, void **, size_t *);
typedef int (*collect_fn)(void **, size_t *);
typedef int (*cleanup_ctx_fn)(void *, void *);
typedef int (*cleanup_fn)(void *);
typedef int (*exit_fn)(void);
typedef void (*void_fn)(void);

static struct props props[MAX_INSTANCES];
static struct input_proxy_context ctx[MAX_INSTANCES];
static int ok[MAX_INSTANCES];
static int n;
static int legacy;
static int refuse_every;
static struct flb_plugin_proxy_def def;
static struct flb_api api;

static init_fn init;
static collect_ctx_fn collect_ctx;
static collect_fn collect;
static cleanup_ctx_fn cleanup_ctx;
static cleanup_fn cleanup;
static exit_fn plugin_exit;
static void_fn pause_fn;
static void_fn resume_fn;

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static long frames_of[MAX_INSTANCES];  /* batches written, per instance */
static long appends_of[MAX_INSTANCES]; /* flb_input_log_append calls */
static long refused_of[MAX_INSTANCES];

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
 * log level (LOG_LEVEL in the environment, default info = 3). */
static void log_print(int level, const char *file, int line, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    (void) file;
    (void) line;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "flb-log level=%d %s\n", level, buf);
}

static int log_level = 3;

static int input_log_check(void *ins, int level)
{
    (void) ins;
    return level <= log_level;
}

static void *sym(void *h, const char *name, int required)
{
    void *f = dlsym(h, name);
    if (!f && required) {
        fprintf(stderr, "missing symbol %s\n", name);
        exit(2);
    }
    return f;
}

static int index_of(void *ins)
{
    for (int i = 0; i < n; i++) {
        if (ins == &props[i]) {
            return i;
        }
    }
    return -1;
}

static void frame(int inst, const void *data, size_t size)
{
    uint32_t i = inst;
    uint64_t len = size;
    pthread_mutex_lock(&out_lock);
    fwrite(&i, 4, 1, stdout);
    fwrite(&len, 8, 1, stdout);
    fwrite(data, 1, size, stdout);
    fflush(stdout);
    frames_of[inst]++;
    pthread_mutex_unlock(&out_lock);
}

/* Fluent Bit's flb_input_log_append, found by the plugin when the host is
 * built with -rdynamic. */
int flb_input_log_append(void *ins, const char *tag, size_t tag_len, const void *buf, size_t size)
{
    int i = index_of(ins);
    (void) tag;
    (void) tag_len;
    if (i < 0 || size == 0) {
        fprintf(stderr, "flb_input_log_append: unknown instance %p\n", ins);
        return -1;
    }
    pthread_mutex_lock(&out_lock);
    long calls = ++appends_of[i];
    int refuse = refuse_every > 0 && calls % refuse_every == 0;
    if (refuse) {
        refused_of[i]++;
    }
    pthread_mutex_unlock(&out_lock);
    if (refuse) {
        return -1;
    }
    frame(i, buf, size);
    return 0;
}

#ifdef SINCE_403
void flb_engine_stop_ingestion(void *config)
{
    (void) config;
    fprintf(stderr, "flb_engine_stop_ingestion called\n");
}

void flb_storage_chunk_count(void *config, int *mem_chunks, int *fs_chunks)
{
    (void) config;
    *mem_chunks = 0;
    *fs_chunks = 0;
    fprintf(stderr, "flb_storage_chunk_count called\n");
}
#endif

/* Fluent Bit's flb_input_name: the alias, or msgraph.N. */
const char *flb_input_name(void *ins)
{
    int i = index_of(ins);
    return i < 0 ? NULL : props[i].name;
}

static long frames(int inst)
{
    pthread_mutex_lock(&out_lock);
    long f = frames_of[inst];
    pthread_mutex_unlock(&out_lock);
    return f;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int init_instance(int i)
{
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
    return ret;
}

/* One collect timer tick of instance i: a batch returned is appended and
 * followed by cleanup, which frees it. Returns the bytes returned. */
static size_t tick(int i)
{
    void *data = NULL;
    size_t size = 0;
    if (!ok[i]) {
        return 0;
    }
    if (legacy) {
        collect(&data, &size);
    } else {
        collect_ctx(ctx[i].remote_context, &data, &size);
    }
    if (size == 0) {
        return 0;
    }
    frame(i, data, size);
    if (legacy) {
        cleanup(data);
    } else {
        cleanup_ctx(ctx[i].remote_context, data);
    }
    return size;
}

/* Threaded mode: the commands the main thread sends an instance's
 * thread, as Fluent Bit writes to the thread's pipe. */
enum { CMD_NONE, CMD_PAUSE, CMD_RESUME, CMD_EXIT };

struct worker {
    int i;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int cmd;
    int inited;
    int go;
};

static struct worker workers[MAX_INSTANCES];

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    init_instance(w->i);
    pthread_mutex_lock(&w->mu);
    w->inited = 1;
    pthread_cond_broadcast(&w->cv);
    while (!w->go) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        int cmd = w->cmd;
        pthread_mutex_unlock(&w->mu);
        if (cmd == CMD_PAUSE) {
            pause_fn();
        } else if (cmd == CMD_RESUME) {
            resume_fn();
        } else if (cmd == CMD_EXIT) {
            fprintf(stderr, "exit %d ret=%d\n", w->i, plugin_exit());
        }
        if (cmd != CMD_NONE) {
            pthread_mutex_lock(&w->mu);
            w->cmd = CMD_NONE;
            pthread_cond_broadcast(&w->cv);
            pthread_mutex_unlock(&w->mu);
        }
        if (cmd == CMD_EXIT) {
            return NULL;
        }
        tick(w->i);
        nap_ms(100);
    }
}

/* command hands a command to instance i's thread and waits until the thread
 * has carried it out. */
static void command(int i, int cmd)
{
    struct worker *w = &workers[i];
    pthread_mutex_lock(&w->mu);
    w->cmd = cmd;
    while (w->cmd != CMD_NONE) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
}

static void run_threads(int seconds)
{
    for (int i = 0; i < n; i++) {
        struct worker *w = &workers[i];
        w->i = i;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        pthread_create(&w->th, NULL, worker_main, w);
        pthread_mutex_lock(&w->mu);
        while (!w->inited) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        pthread_mutex_unlock(&w->mu);
    }
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&workers[i].mu);
        workers[i].go = 1;
        pthread_cond_broadcast(&workers[i].cv);
        pthread_mutex_unlock(&workers[i].mu);
    }
    long start = 0;
    int step = 0;
    if (n >= 2 && ok[0] && ok[1] && seconds >= 4) {
        /* Pause 0; then pause 1 and resume 0: the resume of one input
         * must not let the other, still paused, deliver. */
        nap_ms(500);
        command(0, CMD_PAUSE);
        start = frames(0);
        nap_ms(800);
        long during0 = frames(0) - start;
        command(1, CMD_PAUSE);
        command(1, CMD_PAUSE); /* a second pause, for another reason */
        command(0, CMD_RESUME);
        start = frames(1);
        nap_ms(800);
        long during1 = frames(1) - start;
        command(1, CMD_RESUME);
        fprintf(stderr, "paused batches inst0=%ld inst1=%ld\n", during0, during1);
        step = 2100;
    }
    nap_ms(seconds * 1000L - step);
    for (int i = n - 1; i >= 0; i--) {
        command(i, CMD_EXIT);
        pthread_join(workers[i].th, NULL);
    }
}

static void run_main_thread(int seconds)
{
    for (int i = 0; i < n; i++) {
        init_instance(i);
    }
    int ticks = seconds * 10;
    for (int t = 0; t < ticks; t++) {
        if (t == ticks / 2) {
            pause_fn();
            long before = 0, after = 0;
            for (int i = 0; i < n; i++) {
                before += frames(i);
            }
            for (int r = 0; r < 20; r++) {
                for (int i = 0; i < n; i++) {
                    tick(i);
                }
                nap_ms(50);
            }
            for (int i = 0; i < n; i++) {
                after += frames(i);
            }
            fprintf(stderr, "paused batches=%ld\n", after - before);
            resume_fn();
        }
        for (int i = 0; i < n; i++) {
            tick(i);
        }
        nap_ms(100);
    }
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "exit %d ret=%d\n", i, plugin_exit());
    }
    /* After exit, callbacks must be harmless. */
    void *data = NULL;
    size_t size = 0;
    if (!legacy && ok[0]) {
        collect_ctx(ctx[0].remote_context, &data, &size);
    }
    fprintf(stderr, "after exit size=%zu\n", size);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: host PLUGIN.so SECONDS key=value... [-- key=value...]\n");
        return 2;
    }
    legacy = getenv("LEGACY") && strcmp(getenv("LEGACY"), "1") == 0;
    int threads = getenv("THREADS") && strcmp(getenv("THREADS"), "1") == 0;
    refuse_every = getenv("REFUSE") ? atoi(getenv("REFUSE")) : 0;
    if (getenv("LOG_LEVEL")) {
        log_level = atoi(getenv("LOG_LEVEL"));
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    int seconds = atoi(argv[2]);

    memset(&def, 0, sizeof(def));
    if (((register_fn) sym(h, "FLBPluginRegister", 1))(&def) != 0) {
        fprintf(stderr, "register failed\n");
        return 1;
    }
    fprintf(stderr, "registered name=%s type=%d proxy=%d\n", def.name, def.type, def.proxy);

    struct flb_api a = {NULL, get_property, NULL, NULL, log_print, input_log_check, NULL};
    api = a;
    init = sym(h, "FLBPluginInit", 1);
    collect_ctx = sym(h, "FLBPluginInputCallbackCtx", 0);
    collect = sym(h, "FLBPluginInputCallback", 1);
    cleanup_ctx = sym(h, "FLBPluginInputCleanupCallbackCtx", 0);
    cleanup = sym(h, "FLBPluginInputCleanupCallback", 1);
    plugin_exit = sym(h, "FLBPluginExit", 1);
    pause_fn = sym(h, "FLBPluginInputPause", 1);
    resume_fn = sym(h, "FLBPluginInputResume", 1);

    /* Split the instance properties on "--"; name them as Fluent Bit
     * does. */
    n = 0;
    props[0].n = 0;
    props[0].kv = &argv[3];
    for (int i = 3; i < argc && n < MAX_INSTANCES - 1; i++) {
        if (strcmp(argv[i], "--") == 0) {
            n++;
            props[n].n = 0;
            props[n].kv = &argv[i + 1];
            continue;
        }
        props[n].n++;
    }
    n++;
    for (int i = 0; i < n; i++) {
        char *alias = get_property("alias", &props[i]);
        if (alias) {
            snprintf(props[i].name, sizeof(props[i].name), "%s", alias);
        } else {
            snprintf(props[i].name, sizeof(props[i].name), "msgraph.%d", i);
        }
    }

    if (threads) {
        run_threads(seconds);
    } else {
        run_main_thread(seconds);
    }
    for (int i = 0; i < n; i++) {
        if (appends_of[i] > 0) {
            fprintf(stderr, "appended %d calls=%ld refused=%ld\n", i, appends_of[i], refused_of[i]);
        }
    }
    ((void (*)(void *)) sym(h, "FLBPluginUnregister", 1))(&def);
    fprintf(stderr, "done\n");
    return 0;
}
