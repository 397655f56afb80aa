# in_msgraph: a Fluent Bit input plugin for Microsoft Graph audit logs.
GO         ?= go
FLUENT_BIT ?= fluent-bit
SO         := build/in_msgraph.so
SIM        := build/graphsim
DEMO_PORT  ?= 18080
FUZZTIME   ?= 10s
FUZZ       := internal/records:FuzzDecodePage internal/config:FuzzParse internal/schedule:FuzzDecodeState internal/graphsim:FuzzParseEndpointFilter
SOURCES    := $(shell find plugin internal -name '*.go' -o -name '*.c' -o -name '*.h') go.mod go.sum

.PHONY: all build test fmt-check vet fuzz bench e2e demo clean

all: build

build: $(SO)

$(SO): $(SOURCES)
	$(GO) build -trimpath -buildmode=c-shared -o $@ ./plugin

$(SIM): $(SOURCES)
	$(GO) build -trimpath -o $@ ./internal/graphsim/cmd/graphsim

# Every test: formatting, vet, the unit and simulator tests with the race
# detector, the C-ABI test (test/cabi), the end-to-end tests when Fluent Bit
# is found through $$FLUENT_BIT or PATH, and each fuzz target for FUZZTIME
# (its corpus is in the package's testdata/fuzz).
test: fmt-check vet $(SO)
	@fb=$${FLUENT_BIT:-fluent-bit}; command -v "$$fb" >/dev/null 2>&1 || \
	  echo "note: no Fluent Bit found through FLUENT_BIT or PATH: the end-to-end tests in ./test are skipped"
	MSGRAPH_PLUGIN=$(SO) $(GO) test -race -timeout 20m ./...
	@$(MAKE) --no-print-directory fuzz

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

# Only the end-to-end tests with a real Fluent Bit.
e2e: $(SO)
	MSGRAPH_PLUGIN=$(SO) $(GO) test -count=1 -v -run 'EndToEnd|Examples' -timeout 20m ./test/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The plugin in a real Fluent Bit against the Graph simulator, records on
# stdout; Ctrl-C stops both.
demo: $(SO) $(SIM)
	@command -v $(FLUENT_BIT) >/dev/null || { echo "make demo needs Fluent Bit (built with Go plugin support) on PATH, or FLUENT_BIT=/path/to/fluent-bit"; exit 1; }
	@$(SIM) -listen 127.0.0.1:$(DEMO_PORT) -events 300 -span 30m -rate 2 -late-scale 5s -throttle & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; sleep 1; \
	MSGRAPH_DEMO_URL=http://127.0.0.1:$(DEMO_PORT) $(FLUENT_BIT) -e $(SO) -c examples/demo.yaml

clean:
	rm -rf build
