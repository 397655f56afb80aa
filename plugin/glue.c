#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <unistd.h>
#include "glue.h"
#include "_cgo_export.h"

/* The structures as Fluent Bit 4.1+ lays them out (src/proxy/go/go.h and
 * include/fluent-bit/flb_plugin_proxy.h). fluent-bit-go's header mirrors an
 * older, different input context, so it cannot be used to set the
 * per-instance context. */
struct msgraph_input_proxy_context {
    int coll_fd;
    void *remote_context;
    void *proxy;
};

/* struct flb_api (include/fluent-bit/flb_api.h), unchanged in these
 * fields since Fluent Bit 2.1. */
struct msgraph_flb_api {
    void *output_get_property;
    void *input_get_property;
    void *output_get_cmt_instance;
    void *input_get_cmt_instance;
    void (*log_print)(int, const char *, int, const char *, ...);
    int (*input_log_check)(void *, int);
};

struct msgraph_go_input_plugin {
    char *name;
    struct msgraph_flb_api *api;
    void *i_ins;
    struct msgraph_input_proxy_context *context;
    void *cb_init;
    void *cb_collect;
    void *cb_collect_ctx; /* before 4.1 this slot holds cb_cleanup */
};

int msgraph_has_ctx_callbacks(void *plugin)
{
    struct msgraph_go_input_plugin *p = plugin;
    /* Fluent Bit filled cb_collect_ctx with our exported symbol; an older
     * Fluent Bit has the cleanup callback (or NULL) in that slot. */
    return p != NULL && p->context != NULL &&
           p->cb_collect_ctx == (void *) &FLBPluginInputCallbackCtx;
}

void msgraph_set_remote_context(void *plugin, uintptr_t handle)
{
    struct msgraph_go_input_plugin *p = plugin;
    p->context->remote_context = (void *) handle;
}

void *msgraph_api(void *plugin)
{
    return plugin ? ((struct msgraph_go_input_plugin *) plugin)->api : NULL;
}

void *msgraph_instance(void *plugin)
{
    return plugin ? ((struct msgraph_go_input_plugin *) plugin)->i_ins : NULL;
}

int msgraph_log(void *api, void *ins, int level, const char *msg)
{
    struct msgraph_flb_api *a = api;
    if (a == NULL || a->log_print == NULL) {
        return 0;
    }
    if (a->input_log_check != NULL && ins != NULL && !a->input_log_check(ins, level)) {
        return 1; /* below the input's log_level: dropped, as Fluent Bit does */
    }
    a->log_print(level, NULL, 0, "%s", msg);
    return 1;
}

uint64_t msgraph_thread(void)
{
    return (uint64_t) (uintptr_t) pthread_self();
}

/* int flb_input_log_append(struct flb_input_instance *ins, const char *tag,
 * size_t tag_len, const void *buf, size_t buf_size), unchanged since
 * Fluent Bit 2.1 (include/fluent-bit/flb_input_log.h). Fluent Bit exports
 * its symbols dynamically, so it is found in the process. */
typedef int (*msgraph_log_append_fn)(void *, const char *, size_t, const void *, size_t);

static msgraph_log_append_fn log_append;
static pthread_once_t log_append_once = PTHREAD_ONCE_INIT;

static void find_log_append(void)
{
    log_append = (msgraph_log_append_fn) dlsym(RTLD_DEFAULT, "flb_input_log_append");
}

int msgraph_can_append(void)
{
    pthread_once(&log_append_once, find_log_append);
    return log_append != NULL;
}

int msgraph_append(void *ins, const void *buf, size_t size)
{
    if (!msgraph_can_append() || ins == NULL) {
        return -1;
    }
    return log_append(ins, NULL, 0, buf, size);
}

/* const char *flb_input_name(struct flb_input_instance *ins), unchanged
 * since Fluent Bit 1.x (include/fluent-bit/flb_input.h). */
typedef const char *(*msgraph_input_name_fn)(void *);

const char *msgraph_input_name(void *ins)
{
    msgraph_input_name_fn fn;
    if (ins == NULL) {
        return NULL;
    }
    fn = (msgraph_input_name_fn) dlsym(RTLD_DEFAULT, "flb_input_name");
    return fn ? fn(ins) : NULL;
}

/* void flb_engine_stop_ingestion(struct flb_config *) and void
 * flb_storage_chunk_count(struct flb_config *, int *, int *), added in
 * Fluent Bit 4.0.3 (include/fluent-bit/flb_engine.h, flb_storage.h). Only
 * looked up, never called. */
int msgraph_since_403(void)
{
    return dlsym(RTLD_DEFAULT, "flb_engine_stop_ingestion") != NULL &&
           dlsym(RTLD_DEFAULT, "flb_storage_chunk_count") != NULL;
}

void msgraph_exit(int status)
{
    _exit(status);
}
