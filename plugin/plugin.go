// Command plugin is the in_msgraph shared object: the C entry points that
// Fluent Bit's Go proxy looks up. Each one finds the instance for its
// context (or its thread), calls one method of internal/host, and maps the
// result to what Fluent Bit expects. Build it with go build
// -buildmode=c-shared.
package main

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "glue.h"
*/
import "C"

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/fluent/fluent-bit-go/input"

	"github.com/in-msgraph/in_msgraph/internal/host"
	"github.com/in-msgraph/in_msgraph/internal/logging"
)

var plugins = host.New()

// getter reads the properties of the instance being initialised.
type getter struct{ plugin unsafe.Pointer }

func (g getter) Get(key string) string { return input.FLBPluginConfigKey(g.plugin, key) }

func thread() host.Thread { return host.Thread(C.msgraph_thread()) }

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
	fb := host.FluentBit{PerInstance: perInstance, Append: C.msgraph_can_append() != 0, Since403: C.msgraph_since_403() != 0}
	ins := C.msgraph_instance(plugin)
	log := sink(C.msgraph_api(plugin), ins)
	caller := host.Caller{PerInstance: perInstance, Thread: thread(), Sink: log, Ref: ins}
	if name := C.msgraph_input_name(ins); name != nil {
		caller.Name = C.GoString(name)
	}
	handle, err := plugins.Init(getter{plugin}, caller)
	if err != nil {
		f := plugins.Failed(fb, caller, err)
		for _, l := range f.Lines {
			logLine(log, logging.Error, l)
		}
		if !f.Exit {
			// Fluent Bit then stops with "failed to initialize".
			return input.FLB_ERROR
		}
		time.Sleep(f.Wait)
		os.Stderr.WriteString(f.Stderr)
		C.msgraph_exit(C.int(f.Status))
		// Not reached. Success would keep the proxy from freeing the
		// plugin; the instance is not registered and delivers nothing.
		return input.FLB_OK
	}
	if perInstance {
		C.msgraph_set_remote_context(plugin, C.uintptr_t(handle))
	}
	for _, l := range plugins.Started(fb) {
		logLine(log, logging.Warn, "[input:msgraph] "+l)
	}
	return input.FLB_OK
}

// logLine logs through Fluent Bit's logger, or on stderr without one.
func logLine(log logging.Sink, level logging.Level, line string) {
	if log != nil && log(level, line) {
		return
	}
	name := "error"
	if level != logging.Error {
		name = "warn"
	}
	fmt.Fprintf(os.Stderr, "[%s] %s\n", name, line)
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

// collect hands the instance's next batch to Fluent Bit. Where Fluent Bit
// exports flb_input_log_append the plugin appends the batch itself, as the
// proxy would, and learns whether Fluent Bit accepted it (the proxy
// ignores that): a refused batch is not committed and is offered again.
// It then reports size 0, so the proxy appends nothing and calls no
// cleanup. Otherwise the batch goes back in the instance's C buffer (see
// cBuffers); the proxy appends it and its cleanup callback commits it.
func collect(handle host.Handle, data *unsafe.Pointer, size *C.size_t) int {
	*data = nil
	*size = 0
	batch, ins := plugins.Collect(handle)
	if len(batch) == 0 {
		return input.FLB_OK
	}
	if ins != nil && C.msgraph_can_append() != 0 {
		// Fluent Bit copies the records before it returns.
		ret := C.msgraph_append(ins, unsafe.Pointer(&batch[0]), C.size_t(len(batch)))
		plugins.Handed(handle, ret == 0)
		return input.FLB_OK
	}
	*data = buffers.fill(handle, batch)
	*size = C.size_t(len(batch))
	return input.FLB_OK
}

//export FLBPluginInputCallbackCtx
func FLBPluginInputCallbackCtx(ctx unsafe.Pointer, data *unsafe.Pointer, size *C.size_t) int {
	return collect(host.Handle(uintptr(ctx)), data, size)
}

//export FLBPluginInputCallback
func FLBPluginInputCallback(data *unsafe.Pointer, size *C.size_t) int {
	return collect(0, data, size)
}

//export FLBPluginInputCleanupCallbackCtx
func FLBPluginInputCleanupCallbackCtx(ctx, data unsafe.Pointer) int {
	buffers.done(host.Handle(uintptr(ctx)), data)
	plugins.Handed(host.Handle(uintptr(ctx)), true)
	return input.FLB_OK
}

//export FLBPluginInputCleanupCallback
func FLBPluginInputCleanupCallback(data unsafe.Pointer) int {
	buffers.done(0, data)
	plugins.Handed(0, true)
	return input.FLB_OK
}

//export FLBPluginInputPause
func FLBPluginInputPause() { plugins.Pause(thread()) }

//export FLBPluginInputResume
func FLBPluginInputResume() { plugins.Resume(thread()) }

//export FLBPluginExit
func FLBPluginExit() int {
	handle, err := plugins.Exit(thread())
	if err != nil {
		fmt.Fprintf(os.Stderr, "[error] [input:msgraph] %v\n", err)
	}
	buffers.drop(handle, plugins.Len() == 0)
	return input.FLB_OK
}

func main() {}
