# stepwise: `make run` runs a chain against a local model, `make test`
# checks everything. Nothing here needs anything but Go.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/stepwise

# make run settings: any chain file, a model your backend has, and the
# input (examples/qa.json carries its own, so INPUT may stay empty).
CHAIN    ?= examples/qa.json
MODEL    ?= llama3.2:1b
INPUT    ?=
ARGS     ?=

.PHONY: all build run test lint fmt bench clean

all: build

## build: the stepwise binary in bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stepwise

## run: run CHAIN on INPUT with MODEL against Ollama (ARGS adds flags,
## e.g. ARGS='-openai-base-url http://127.0.0.1:8000/v1')
run: build
	./$(BIN) run -chain '$(CHAIN)' -model '$(MODEL)' $(if $(INPUT),-input "$(INPUT)") -steps $(ARGS)

## test: lint, then every test with the race detector
test: lint
	$(GO) test -race -count=1 ./...

## lint: gofmt and go vet
lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w .

## bench: the engine's cost per step, in process and through HTTP
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./core/ ./core/llm/...

clean:
	rm -rf bin
