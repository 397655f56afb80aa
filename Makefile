# in_msgraph: a Fluent Bit input plugin for Microsoft Graph audit logs.
GO         ?= go
SO         := build/in_msgraph.so
SIM        := build/graphsim
DEMO_PORT  ?= 18080
FUZZTIME   ?= 10s
FUZZ       := internal/records:FuzzDecodePage internal/config:FuzzParse internal/schedule:FuzzDecodeState internal/graphsim:FuzzParseEndpointFilter
SOURCES    := $(shell find plugin internal -name '*.go' -o -name '*.c' -o -name '*.h') go.mod go.sum

# Tests that skip themselves under the race detector (raceEnabled in the
# package's race_test.go, or debug.ReadBuildInfo's -race setting), as
# package:-run pattern: make test runs them, and only them, in a second
# pass without -race. A new such skip belongs here.
NORACE     := internal/dedup:^TestBytesPerID$$ \
              internal/graph:^TestResponseOverMaxBodyIsRefused$$ \
              internal/input:^TestBadInput$$/^a_page_over_100_MB$$ \
              internal/input:^TestVolume[^A] \
              internal/input:^TestScheduleCost$$

# The tests in ./test that run a real Fluent Bit (make e2e).
E2E        := EndToEnd|Example|BadConfig

# Which Fluent Bit runs the end-to-end tests and the demo: $$FLUENT_BIT,
# else fluent-bit on PATH when it has Go plugin support (-e), else the
# binary that $(FB_INSTALL) unpacks (5.1.1; FLUENT_BIT_VERSION picks
# another). The tests in ./test and .ci/run look in the same order. The
# snippet leaves the path in $$fb, or "" for none.
FB_INSTALL := ../shared/tools/fluent-bit/install.sh
FIND_FB     = fb=$${FLUENT_BIT:-}; \
	if [ -z "$$fb" ]; then fb=$$(command -v fluent-bit || true); \
	  if [ -n "$$fb" ] && ! "$$fb" --help 2>&1 | grep -q -- --plugin; then fb=; fi; fi; \
	if [ -z "$$fb" ] && [ -x $(FB_INSTALL) ]; then fb=$$($(FB_INSTALL)) || exit 1; fi

.PHONY: all build test test-versions norace fmt-check vet fuzz bench e2e demo clean

all: build

build: $(SO)

$(SO): $(SOURCES)
	$(GO) build -trimpath -buildmode=c-shared -o $@ ./plugin

$(SIM): $(SOURCES)
	$(GO) build -trimpath -o $@ ./internal/graphsim/cmd/graphsim

# Every test: formatting, vet, the unit and simulator tests with the race
# detector, the C-ABI test and the end-to-end tests (./test, with the Fluent
# Bit FIND_FB finds), the NORACE tests without the race detector, and each
# fuzz target for FUZZTIME (its corpus is in the package's testdata/fuzz).
# ./test mostly waits on Fluent Bit and the simulator's clock, so it runs
# alongside the rest, which is niced to leave it the CPU it needs; its
# output is shown when both are done. TestVolumeActivity (100 M records of
# the Management Activity API, about 10 minutes, without the race
# detector) runs alongside too, niced, and so does TestVolumeTenants (500
# tenants of one application for 3 simulated days, about 8 minutes); each
# fails make test if it fails or does not run.
test: fmt-check vet $(SO)
	@$(FIND_FB); \
	if [ -n "$$fb" ]; then echo "Fluent Bit for the end-to-end tests: $$fb ($$("$$fb" --version 2>/dev/null | head -n 1))"; export FLUENT_BIT="$$fb"; \
	else echo "note: no Fluent Bit found through FLUENT_BIT, PATH or $(FB_INSTALL): the end-to-end tests in ./test are skipped"; fi; \
	log=$$(mktemp) || exit 1; vlog=$$(mktemp) || exit 1; \
	echo "MSGRAPH_PLUGIN=$(SO) $(GO) test -race -timeout 25m ./test/ &    (output below when done)"; \
	MSGRAPH_PLUGIN=$(SO) $(GO) test -race -timeout 25m ./test/ > "$$log" 2>&1 & e2e=$$!; \
	echo "nice $(GO) test -v -timeout 40m -run '^TestVolumeActivity$$' ./internal/input &    (output below when done)"; \
	nice $(GO) test -v -timeout 40m -run '^TestVolumeActivity$$' ./internal/input > "$$vlog" 2>&1 & vol=$$!; \
	tlog=$$(mktemp) || exit 1; \
	echo "nice $(GO) test -v -timeout 40m -run '^TestVolumeTenants$$' ./internal/tenants &    (output below when done)"; \
	nice $(GO) test -v -timeout 40m -run '^TestVolumeTenants$$' ./internal/tenants > "$$tlog" 2>&1 & vol2=$$!; \
	trap 'kill $$e2e $$vol $$vol2 2>/dev/null; rm -f "$$log" "$$vlog" "$$tlog"' EXIT; \
	pkgs=$$($(GO) list ./... | grep -v '/test$$') || exit 1; \
	echo "$(GO) test -race -timeout 20m <every package but ./test>"; \
	nice $(GO) test -race -timeout 20m $$pkgs && nice $(MAKE) --no-print-directory norace fuzz; rest=$$?; \
	wait $$e2e; rc=$$?; \
	wait $$vol; vrc=$$?; \
	wait $$vol2; trc=$$?; \
	echo "--- $(GO) test -run '^TestVolumeActivity$$' ./internal/input:"; grep -v '^    volume_test.go:.*\] \[ warn\]' "$$vlog"; \
	grep -q -- '--- PASS: TestVolumeActivity' "$$vlog" || vrc=1; \
	echo "--- $(GO) test -run '^TestVolumeTenants$$' ./internal/tenants:"; cat "$$tlog"; \
	grep -q -- '--- PASS: TestVolumeTenants' "$$tlog" || trc=1; \
	echo "--- $(GO) test -race ./test/:"; cat "$$log"; \
	[ $$rest -eq 0 ] && [ $$rc -eq 0 ] && [ $$vrc -eq 0 ] && [ $$trc -eq 0 ]

# The NORACE tests, without the race detector. A pattern that selects no
# test, or a test that skips here too, fails: each must really run.
norace:
	@for t in $(NORACE); do \
	  pkg=$${t%%:*}; run=$${t#*:}; leaf=$${run##*/}; leaf=$${leaf#^}; leaf=$${leaf%[$$]}; \
	  echo "$(GO) test -v -timeout 40m -run '$$run' ./$$pkg"; \
	  out=$$($(GO) test -v -timeout 40m -run "$$run" ./$$pkg 2>&1); rc=$$?; \
	  echo "$$out"; \
	  [ $$rc -eq 0 ] || exit 1; \
	  echo "$$out" | grep -q -- "--- PASS: .*$$leaf" || { echo "make norace: -run '$$run' ran no $$leaf in ./$$pkg"; exit 1; }; \
	  ! echo "$$out" | grep -q -- '--- SKIP' || { echo "make norace: a test of -run '$$run' skips without -race too"; exit 1; }; \
	done

fuzz:
	@for t in $(FUZZ); do \
	  echo "$(GO) test -run '^$$' -fuzz '^$${t#*:}$$' -fuzztime $(FUZZTIME) ./$${t%%:*}"; \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) ./$${t%%:*} || exit 1; \
	done

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The version matrix: TestVersionMatrix (test/e2e_versions_test.go) once
# for each Fluent Bit that $(FB_INSTALL) --list names, one after the other,
# each through FLUENT_BIT: a load, a restart, a stop while Graph requests
# hang, two msgraph inputs, a configuration error and a hot reload, with
# what each release must do. Each version's output is shown when it fails
# (its scenarios' results when it passes); then one figures line per
# version. It fails if a version fails, or if its test did not run.
test-versions: $(SO)
	@[ -x $(FB_INSTALL) ] || { echo "make test-versions needs $(FB_INSTALL)"; exit 1; }; \
	versions=$$($(FB_INSTALL) --list) && [ -n "$$versions" ] || { echo "$(FB_INSTALL) --list named no version"; exit 1; }; \
	began=$$(date +%s); fail=0; figures=$$(mktemp) || exit 1; trap 'rm -f "$$figures"' EXIT; \
	for v in $$versions; do \
	  fb=$$(FLUENT_BIT_VERSION=$$v $(FB_INSTALL)) || { echo "Fluent Bit $$v: $(FB_INSTALL) failed"; fail=1; continue; }; \
	  echo "FLUENT_BIT=$$fb MSGRAPH_PLUGIN=$(SO) $(GO) test -count=1 -v -parallel 8 -run '^TestVersionMatrix$$' -timeout 10m ./test/"; \
	  t0=$$(date +%s); \
	  out=$$(FLUENT_BIT="$$fb" MSGRAPH_PLUGIN=$(SO) $(GO) test -count=1 -v -parallel 8 -run '^TestVersionMatrix$$' -timeout 10m ./test/ 2>&1); rc=$$?; \
	  if [ $$rc -ne 0 ] || ! echo "$$out" | grep -q -- '^--- PASS: TestVersionMatrix '; then \
	    echo "$$out"; echo "Fluent Bit $$v: FAIL"; fail=1; \
	  else \
	    echo "$$out" | grep -E -- '^ *--- (PASS|SKIP)'; echo "Fluent Bit $$v: ok ($$(( $$(date +%s) - t0 ))s)"; \
	  fi; \
	  line=$$(echo "$$out" | sed -n 's/^.*figures: //p'); \
	  echo "$${line:-Fluent Bit $$v | no figures}" >> "$$figures"; \
	done; \
	echo "--- version matrix ($$(( $$(date +%s) - began ))s):"; cat "$$figures"; \
	[ $$fail -eq 0 ]

# Only the tests that run a real Fluent Bit (FIND_FB).
e2e: $(SO)
	@$(FIND_FB); [ -z "$$fb" ] || export FLUENT_BIT="$$fb"; \
	echo "MSGRAPH_PLUGIN=$(SO) FLUENT_BIT=$$fb $(GO) test -count=1 -v -run '$(E2E)' -timeout 20m ./test/"; \
	MSGRAPH_PLUGIN=$(SO) $(GO) test -count=1 -v -run '$(E2E)' -timeout 20m ./test/

# Every Go benchmark, with allocations (docs/performance.md says what each
# measures and what it found). The slow ones run once: b.N stays 1.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

# A real Fluent Bit: its CPU seconds per million events and peak memory
# with msgraph inputs reading the simulator, next to its own http input
# given the same events, and its peak memory with a million-id de-dup
# horizon. Takes about four minutes; needs Fluent Bit (FIND_FB).
.PHONY: bench-e2e
bench-e2e: $(SO)
	@$(FIND_FB); [ -n "$$fb" ] || { echo "make bench-e2e needs Fluent Bit: FLUENT_BIT, fluent-bit on PATH or $(FB_INSTALL)"; exit 1; }; \
	echo "MSGRAPH_BENCH_E2E=1 MSGRAPH_PLUGIN=$(SO) FLUENT_BIT=$$fb $(GO) test -count=1 -v -run '^TestFluentBitCost$$' -timeout 20m ./test/"; \
	MSGRAPH_BENCH_E2E=1 MSGRAPH_PLUGIN=$(SO) FLUENT_BIT="$$fb" $(GO) test -count=1 -v -run '^TestFluentBitCost$$' -timeout 20m ./test/

# The plugin in a real Fluent Bit (FIND_FB) against the Graph simulator,
# records on stdout; Ctrl-C stops both. Each run starts afresh: a new
# simulator, and the state file in a new temporary directory, removed at
# the end.
demo: $(SO) $(SIM)
	@$(FIND_FB); [ -n "$$fb" ] || { echo "make demo needs Fluent Bit built with Go plugin support: FLUENT_BIT=/path/to/fluent-bit, fluent-bit on PATH, or $(FB_INSTALL)"; exit 1; }; \
	dir=$$(mktemp -d "$${TMPDIR:-/tmp}/in_msgraph-demo.XXXXXX") || exit 1; \
	$(SIM) -listen 127.0.0.1:$(DEMO_PORT) -events 300 -span 30m -rate 2 -late-scale 5s -throttle & sim=$$!; \
	trap 'kill $$sim 2>/dev/null; rm -rf "$$dir"' EXIT; trap 'exit 130' INT TERM; sleep 1; \
	MSGRAPH_DEMO_URL=http://127.0.0.1:$(DEMO_PORT) MSGRAPH_DEMO_DB="$$dir/state.db" "$$fb" -e $(SO) -c examples/demo.yaml

clean:
	rm -rf build

# The shared object for each Linux architecture Fluent Bit ships for, with
# their SHA-256 sums, in build/release. cgo needs a C cross compiler for
# the architecture that is not the host's (Debian: gcc-aarch64-linux-gnu or
# gcc-x86-64-linux-gnu); CC_amd64 and CC_arm64 override the choice.
RELEASE    := build/release
HOSTARCH    = $(shell $(GO) env GOHOSTARCH)
CC_amd64   ?= $(if $(filter amd64,$(HOSTARCH)),gcc,x86_64-linux-gnu-gcc)
CC_arm64   ?= $(if $(filter arm64,$(HOSTARCH)),gcc,aarch64-linux-gnu-gcc)

.PHONY: release
release: $(SOURCES)
	@for arch in amd64 arm64; do \
	  cc=$$(case $$arch in amd64) echo "$(CC_amd64)";; arm64) echo "$(CC_arm64)";; esac); \
	  command -v "$$cc" >/dev/null || { echo "make release needs the C compiler $$cc for linux/$$arch (Debian: apt-get install gcc-$$( [ $$arch = arm64 ] && echo aarch64 || echo x86-64 )-linux-gnu)"; exit 1; }; \
	done
	rm -rf $(RELEASE)
	mkdir -p $(RELEASE)
	CGO_ENABLED=1 GOOS=linux GOARCH=amd64 CC=$(CC_amd64) $(GO) build -trimpath -buildmode=c-shared -o $(RELEASE)/in_msgraph-linux-amd64.so ./plugin
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=$(CC_arm64) $(GO) build -trimpath -buildmode=c-shared -o $(RELEASE)/in_msgraph-linux-arm64.so ./plugin
	rm -f $(RELEASE)/*.h
	cd $(RELEASE) && sha256sum in_msgraph-linux-amd64.so in_msgraph-linux-arm64.so > SHA256SUMS
	@cat $(RELEASE)/SHA256SUMS

# examples/helm rendered by the fluent/fluent-bit chart and every manifest
# checked against the Kubernetes API types (its own module, test/helm, so
# that those types stay out of the plugin's dependencies). Needs helm on
# PATH and the chart's directory in MSGRAPH_HELM_CHART; without them only
# pvc.yaml is checked, and the test says why. With Fluent Bit (FIND_FB)
# the rendered configuration is also checked by it (--dry-run).
.PHONY: helm-check
helm-check: $(SO)
	@$(FIND_FB); [ -z "$$fb" ] || export FLUENT_BIT="$$fb"; \
	echo "cd test/helm && MSGRAPH_PLUGIN=$(CURDIR)/$(SO) FLUENT_BIT=$$fb $(GO) test -count=1 -v ./..."; \
	cd test/helm && MSGRAPH_PLUGIN=$(CURDIR)/$(SO) $(GO) test -count=1 -v ./...
