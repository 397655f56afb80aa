#include <stddef.h>
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

struct msgraph_go_input_plugin {
    char *name;
    void *api;
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
