# berth: build, test and run. "make help" lists the targets.
#
# Two commands matter on a fresh Debian/Ubuntu machine:
#   make run    installs what is missing, builds berth and its guest bundle,
#               and starts the default instance
#   make test   runs every test: unit, race, integration and end to end

SHELL := /bin/bash
GO ?= go
ROOT := $(CURDIR)
OUT := $(ROOT)/out
BIN := $(OUT)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

# Pinned code generators: "make generate" must reproduce the committed code
# byte for byte.
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

# Host packages the build and the tests use. qemu and the cross compiler
# are for the guest bundle; docker.io, docker-registry and docker-compose
# are test peers and clients.
APT_PACKAGES := qemu-system-x86 qemu-system-arm qemu-utils protobuf-compiler \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross libseccomp-dev busybox-static \
	e2fsprogs cpio xz-utils iproute2 docker.io docker-registry docker-compose

.PHONY: all help deps build native cross guest generate test unit race integration e2e \
	bench run stop clean vet typecheck-darwin test-inputs

all: build guest

help:
	@echo "make run        install what is missing, build, and start the default instance"
	@echo "make test       every test (unit, race, integration as root, end to end under QEMU)"
	@echo "make build      build out/bin/berth"
	@echo "make native     build out/bin/berth-guestagent, the engine without a VM (Linux, root)"
	@echo "make guest      build the guest bundles (kernel + initrd) for x86_64 and aarch64"
	@echo "make e2e        end-to-end tests only (boots VMs)"
	@echo "make bench      benchmarks, side by side with their peers"
	@echo "make generate   regenerate the protobuf code"
	@echo "make cross      compile for macOS and Windows, and type-check the macOS VM code"
	@echo "make clean      remove build outputs"

# deps installs only what is missing, so a machine that has everything is
# not touched.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@$(MAKE) --no-print-directory guest-deps

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/berth ./cmd/berth

# native builds the guest agent for this Linux host, to run the engine
# without a VM (berth-guestagent serve; see the README).
native:
	@mkdir -p $(BIN)
	$(GO) build -tags seccomp -ldflags '-X github.com/berthvm/berth/guestagent/control.Version=$(VERSION)' \
		-o $(BIN)/berth-guestagent ./cmd/berth-guestagent

include kernel/guest.mk

generate:
	@command -v protoc >/dev/null || { echo "protoc is missing: apt-get install protobuf-compiler"; exit 1; }
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GO_GRPC)
	$(GO) generate ./guestagent/api/

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# cross proves the host side compiles for macOS and Windows. The vz backend
# needs cgo and Apple's SDK, so it is type-checked rather than compiled.
cross:
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/berth
	GOOS=windows GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/berth
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./vm/qemu/ ./hostagent/instance/ ./hostagent/events/ ./forwarding/...
	$(GO) run ./hack/typecheck-darwin ./cmd/berth

# Tests. unit needs neither root nor a VM; race reruns the concurrent
# packages under the race detector; integration and e2e need root and the
# guest bundle.
RACE_PKGS := ./forwarding/... ./hostagent/... ./guestagent/... ./vm/...

unit:
	$(GO) test -count=1 ./...

race:
	$(GO) test -count=1 -race $(RACE_PKGS)

e2e: build guest
	BERTH_E2E=1 $(GO) test -count=1 -timeout 30m -v ./e2e/

# test-inputs fetches what the tests build their images from: the arm64
# busybox for the multi-arch test image.
test-inputs:
	@mkdir -p $(OUT)/cache
	@ls $(OUT)/cache/busybox-static_*_arm64.deb >/dev/null 2>&1 || \
		(cd $(OUT)/cache && apt-get download busybox-static:arm64)

test: deps vet build guest cross test-inputs
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -timeout 20m -race $(RACE_PKGS)
	BERTH_E2E=1 $(GO) test -count=1 -timeout 30m -v ./e2e/

bench: build guest
	$(GO) run ./bench/boot
	$(GO) test ./bench/engine -run '^$$' -bench . -benchtime 1x -timeout 30m
	$(GO) run ./bench/forward

run: deps build guest
	$(BIN)/berth start
	@echo
	@echo "Try: $(BIN)/berth exec default -- uname -a"

stop:
	$(BIN)/berth stop

clean:
	rm -rf $(OUT)/bin $(OUT)/share $(OUT)/test
