# milter-grey: make (build), make test (everything), make run (embedded default).
GO     ?= go
PREFIX ?= /usr
# systemd's own units live in /lib/systemd/system; a unit installed under
# another PREFIX goes where systemd also looks, PREFIX/lib/systemd/system.
UNITDIR ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)

.PHONY: all build man test deps vet unit e2e run install clean bench bench-deliverability profile fuzz fuzz-short

all: build man

build:
	$(GO) build -trimpath -o milter-grey ./cmd/milter-grey

# The manual pages milter-grey(8) and milter-grey.toml(5), from their
# Markdown sources in docs/man, with go-md2man (a tool of go.mod: `go tool`
# builds it from the module cache). `man -l build/man/milter-grey.8` reads
# one before it is installed.
MANPAGES = build/man/milter-grey.8 build/man/milter-grey.toml.5
man: $(MANPAGES)

build/man/%: docs/man/%.md
	@mkdir -p build/man
	$(GO) tool go-md2man -in $< -out $@

# The whole suite: formatting, vet, unit tests and the end-to-end tests
# against real Postfix, swaks, miltertest and redis-server. The deps step
# installs those Debian packages when missing (it needs root then). Then
# each fuzz target for 10 seconds (fuzz-short, below).
test: deps vet
	$(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory fuzz-short

deps:
	@bash e2e/install-deps.sh

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: deps
	$(GO) test -count=1 -v ./e2e/

# Fuzzing (scripts/fuzz.sh): every fuzz target, one after another, each
# for FUZZTIME, ending with a summary; a crasher fails the run and stays in
# its package's testdata/fuzz/NAME/. `make fuzz` is the documented run, 10
# minutes a target; `make fuzz-short` gives each 10 seconds, and `make
# test` runs it.
FUZZTIME         ?= 10m
FUZZMINIMIZETIME ?= 5s
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) bash scripts/fuzz.sh

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

# Serve on the embedded default (Badger in /var/lib/milter-grey, milter on
# 127.0.0.1:10091), with /etc/milter-grey/milter-grey.toml if it exists.
run:
	$(GO) run ./cmd/milter-grey

# The binary and the manual pages under PREFIX; the systemd unit in UNITDIR,
# its ExecStart pointing at PREFIX/sbin/milter-grey; the sample
# configuration as /etc/milter-grey/milter-grey.toml unless that file
# exists (an existing configuration is never overwritten); and, installing
# into this system (no DESTDIR) as root, the system user milter-grey the
# unit runs as (packaging/install-user.sh; the Debian package's postinst
# makes the same user). `make deb` builds the Debian package instead.
install: build man
	install -D -m 0755 milter-grey $(DESTDIR)$(PREFIX)/sbin/milter-grey
	install -D -m 0644 build/man/milter-grey.8 $(DESTDIR)$(PREFIX)/share/man/man8/milter-grey.8
	install -D -m 0644 build/man/milter-grey.toml.5 $(DESTDIR)$(PREFIX)/share/man/man5/milter-grey.toml.5
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|^ExecStart=/usr/sbin/milter-grey |ExecStart=$(PREFIX)/sbin/milter-grey |' \
	  contrib/milter-grey.service > $(DESTDIR)$(UNITDIR)/milter-grey.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/milter-grey.service
	@grep -qx 'ExecStart=$(PREFIX)/sbin/milter-grey .*' $(DESTDIR)$(UNITDIR)/milter-grey.service || \
	  { echo "install: the unit's ExecStart does not name $(PREFIX)/sbin/milter-grey"; exit 1; }
	@if [ -e $(DESTDIR)/etc/milter-grey/milter-grey.toml ]; then \
	  echo "install: kept the existing $(DESTDIR)/etc/milter-grey/milter-grey.toml (the sample with every key is contrib/milter-grey.toml)"; \
	else \
	  install -D -m 0644 contrib/milter-grey.toml $(DESTDIR)/etc/milter-grey/milter-grey.toml; \
	fi
	@DESTDIR='$(DESTDIR)' sh packaging/install-user.sh

clean:
	rm -f milter-grey
	rm -rf build

# The Debian package: dist/milter-grey_VERSION_ARCH.deb, built with dpkg-deb
# from a staging tree (packaging/build-deb.sh; DEB_VERSION, DEB_HOST_ARCH may
# be set).
.PHONY: deb deb-lint
deb:
	bash packaging/build-deb.sh dist

# lintian's opinion of it, for information (lintian is not required).
deb-lint: deb
	lintian --tag-display-limit 0 $$(ls -t dist/milter-grey_*.deb | head -1) || true

# Throughput and latency against a bare go-milter baseline, with 1 M
# triplets and on Redis, plus the Go benchmarks (bench/run.sh; QUICK=1 for a
# short run). profile: CPU and allocation profiles of the daemon under load.
bench:
	bash bench/run.sh

profile:
	bash bench/profile.sh

# Who greylisting delays and which spam it keeps out, per policy, against
# the targets of the default and of domain trust: a synthetic month of mail
# replayed through the engine with a fake clock (bench/deliverability;
# DELIVERABILITY_FLAGS="-messages 20000 -mailboxes 300 -seed 2").
bench-deliverability:
	$(GO) run ./bench/deliverability $(DELIVERABILITY_FLAGS)
