// Command plugin is the in_msgraph shared object: the C entry points that
// Fluent Bit's Go proxy looks up. Each one finds the instance for its
// context, calls one method of internal/host, and maps the result to what
// Fluent Bit expects. Build it with go build -buildmode=c-shared.
package main

/*
#include <stdlib.h>
#include "glue.h"
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/fluent/fluent-bit-go/input"

	"github.com/in-msgraph/in_msgraph/internal/host"
	"github.com/in-msgraph/in_msgraph/internal/logging"
)

var plugins = host.New()

// getter reads the properties of the instance being initialised.
type getter struct{ plugin unsafe.Pointer }

func (g getter) Get(key string) string { return input.FLBPluginConfigKey(g.plugin, key) }

//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) int {
	return input.FLBPluginRegister(def, "msgraph", "Microsoft Graph audit logs (Entra ID sign-ins)")
}

//export FLBPluginUnregister
func FLBPluginUnregister(def unsafe.Pointer) {
	input.FLBPluginUnregister(def)
}

//export FLBPluginInit
func FLBPluginInit(plugin unsafe.Pointer) int {
	perInstance := C.msgraph_has_ctx_callbacks(plugin) != 0
	log := sink(C.msgraph_api(plugin), C.msgraph_instance(plugin))
	handle, err := plugins.InitSink(getter{plugin}, perInstance, log)
	if err != nil {
		// One line that names the key, the value and what is allowed;
		// Fluent Bit then stops with "failed to initialize".
		line := "[input:msgraph] " + err.Error()
		if log == nil || !log(logging.Error, line) {
			fmt.Fprintf(os.Stderr, "[error] %s\n", line)
		}
		return input.FLB_ERROR
	}
	if perInstance {
		C.msgraph_set_remote_context(plugin, C.uintptr_t(handle))
	}
	return input.FLB_OK
}

// sink logs through Fluent Bit's logger of the instance (api and ins are
// Fluent Bit's, valid while the instance lives).
func sink(api, ins unsafe.Pointer) logging.Sink {
	if api == nil {
		return nil
	}
	return func(level logging.Level, line string) bool {
		msg := C.CString(line)
		defer C.free(unsafe.Pointer(msg))
		// Fluent Bit's levels: 1 error, 2 warn, 3 info, 4 debug.
		return C.msgraph_log(api, ins, C.int(level)+1, msg) != 0
	}
}

// deliver hands a batch to Fluent Bit in C memory, which the cleanup
// callback frees. An empty batch leaves size 0: nothing is ingested and
// no cleanup follows.
func deliver(batch []byte, data *unsafe.Pointer, size *C.size_t) int {
	*data = nil
	*size = 0
	if len(batch) > 0 {
		*data = C.CBytes(batch)
		*size = C.size_t(len(batch))
	}
	return input.FLB_OK
}

//export FLBPluginInputCallbackCtx
func FLBPluginInputCallbackCtx(ctx unsafe.Pointer, data *unsafe.Pointer, size *C.size_t) int {
	return deliver(plugins.Collect(host.Handle(uintptr(ctx))), data, size)
}

//export FLBPluginInputCallback
func FLBPluginInputCallback(data *unsafe.Pointer, size *C.size_t) int {
	return deliver(plugins.Collect(0), data, size)
}

//export FLBPluginInputCleanupCallbackCtx
func FLBPluginInputCleanupCallbackCtx(ctx, data unsafe.Pointer) int {
	C.free(data)
	plugins.Committed(host.Handle(uintptr(ctx)))
	return input.FLB_OK
}

//export FLBPluginInputCleanupCallback
func FLBPluginInputCleanupCallback(data unsafe.Pointer) int {
	C.free(data)
	plugins.Committed(0)
	return input.FLB_OK
}

//export FLBPluginInputPause
func FLBPluginInputPause() { plugins.Pause() }

//export FLBPluginInputResume
func FLBPluginInputResume() { plugins.Resume() }

//export FLBPluginExit
func FLBPluginExit() int {
	if err := plugins.StopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "[error] [input:msgraph] %v\n", err)
	}
	return input.FLB_OK
}

func main() {}
