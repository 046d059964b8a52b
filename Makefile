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

# Fuzzing: every Fuzz target of every package (found by its declaration),
# one after another, each for FUZZTIME: `make fuzz` is the documented run,
# 10 minutes a target; `make fuzz-short` gives each 10 seconds, and `make
# test` runs it. Every target runs even when one fails; a summary of the
# last progress line of each ends the run. A crasher is written to the
# package's testdata/fuzz/NAME/ and fails the run: keep it there, as a
# regression case that go test runs with the seeds. New inputs the fuzzer
# keeps are minimised for at most FUZZMINIMIZETIME each (Go's default,
# 60s, would spend a short run on one input). Go 1.26's fuzz coordinator
# can fail a clean run with a bare "context deadline exceeded" as
# -fuzztime ends (go.dev/issue/75804, fixed in Go 1.27): that alone, with
# no crasher written, counts as a pass.
FUZZTIME         ?= 10m
FUZZMINIMIZETIME ?= 5s
fuzz:
	@summary=$$(mktemp); out=$$(mktemp); failed=0; \
	for pkg in $$(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . | xargs -n1 dirname | sort -u); do \
	  for name in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' $$pkg/*_test.go | sed -E 's/^func ([A-Za-z0-9_]+).*/\1/'); do \
	    echo "=== fuzz $$pkg $$name for $(FUZZTIME)"; \
	    before=$$(ls $$pkg/testdata/fuzz/$$name 2>/dev/null | wc -l); \
	    { $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; \
	      echo "exit $$?"; } 2>&1 | tee $$out; \
	    after=$$(ls $$pkg/testdata/fuzz/$$name 2>/dev/null | wc -l); \
	    result=$$(tail -1 $$out); \
	    if [ "$$result" = "exit 0" ]; then result=ok; \
	    elif [ "$$before" = "$$after" ] && grep -qx '    context deadline exceeded' $$out && ! grep -q -e 'panic' -e 'Failing input' -e '_test.go:[0-9]' $$out; then \
	      result="ok (Go's fuzz coordinator reported its own -fuzztime deadline, go.dev/issue/75804; no crasher written)"; \
	    else failed=1; fi; \
	    printf '%-18s %-14s %s: %s\n' "$$pkg" "$$name" "$$result" "$$(grep 'fuzz: elapsed' $$out | tail -1 | sed -e 's/^fuzz: //' -e 's/ ([0-9]*\/sec)//')" >> $$summary; \
	  done; \
	done; \
	echo "=== fuzz summary (FUZZTIME=$(FUZZTIME))"; cat $$summary; rm -f $$summary $$out; \
	exit $$failed

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

# Who greylisting delays and which spam it keeps out, per policy: a
# synthetic month of mail replayed through the engine with a fake clock
# (bench/deliverability; DELIVERABILITY_FLAGS="-messages 20000 -seed 2").
bench-deliverability:
	$(GO) run ./bench/deliverability $(DELIVERABILITY_FLAGS)
