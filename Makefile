# tinywatcher — the two commands that do everything on a fresh machine:
#   make run    build, then follow a demo log that a generator appends to, alerts on stdout
#   make test   every test (unit + integration against real files and loopback servers)
# and `make bench` for the figures (../shared/bench scripts, side by side with grep).

CARGO   ?= cargo
BIN     := target/release/tinywatcher
BENCH   ?= ../shared/bench
BENCHDIR := target/bench
LINES   ?= 1000000

.PHONY: all build release static static-tls run test bench clean

MUSL    := x86_64-unknown-linux-musl
STATIC  := target/$(MUSL)/release/tinywatcher

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# A static binary without TLS, for edge boxes (needs `rustup target add $(MUSL)`).
static:
	$(CARGO) build --release --target $(MUSL) --no-default-features

# A static binary with TLS, OpenSSL built in (needs musl-tools for musl-gcc).
static-tls:
	$(CARGO) build --release --target $(MUSL) --features vendored-tls

# Demo: a generator appends a line every 0.3 s to run/app.log (some of them
# errors); tinywatcher follows it with examples/quickstart.yaml. Ctrl-C stops both.
run: release
	@mkdir -p run && : > run/app.log
	@echo "following run/app.log with examples/quickstart.yaml (Ctrl-C to stop)" >&2
	@( i=0; while :; do i=$$((i+1)); \
	    case $$((i % 7)) in \
	      3) echo "$$(date -u +%FT%TZ) ERROR payment failed: upstream timeout (req $$i)";; \
	      5) echo "$$(date -u +%FT%TZ) WARN  disk at 91% on /var (req $$i)";; \
	      6) echo "$$(date -u +%FT%TZ) INFO  GET /health status=503 dur=12ms (req $$i)";; \
	      *) echo "$$(date -u +%FT%TZ) INFO  GET /api/items status=200 dur=3ms (req $$i)";; \
	    esac >> run/app.log; sleep 0.3; done ) & gen=$$!; \
	  trap 'kill $$gen 2>/dev/null' EXIT INT TERM; \
	  $(BIN) watch --config examples/quickstart.yaml; \
	  kill $$gen 2>/dev/null || true

test:
	$(CARGO) test --all-targets

# Figures: follow throughput (10 and 100 rules) against grep's ceiling in the
# same run, append-to-alert latency, and the idle footprint of 100 files; then
# our own bench/ scripts: --until-match startup, --once against grep, check on a
# 1 GiB file, one tcp / websocket stream, and the footprint of 50 idle streams.
bench: release
	@mkdir -p $(BENCHDIR)
	@[ -s $(BENCHDIR)/lines.txt ] || python3 $(BENCH)/gen_lines.py $(BENCHDIR)/lines.txt $(LINES)
	@exp=$$(grep -c ERRMARK $(BENCHDIR)/lines.txt); \
	 echo "== binary: $$(stat -c %s $(BIN)) bytes"; \
	 for i in 1 2 3; do \
	   g=$$($(BENCH)/grep_ceiling.sh $(BENCHDIR)/lines.txt); echo "grep  $$g"; \
	   t=$$($(BENCH)/follow_throughput.sh $(BIN) $(BENCHDIR)/lines.txt $$exp); echo "tw10  $$t"; \
	   h=$$(RULES=100 $(BENCH)/follow_throughput.sh $(BIN) $(BENCHDIR)/lines.txt $$exp); echo "tw100 $$h"; \
	   python3 -c "import re,sys; f=lambda s: float(re.search(r'lines_per_s=([\d,]+)', s).group(1).replace(',','')); g,t,h=f('''$$g'''),f('''$$t'''),f('''$$h'''); print(f'ratios: tw10/grep={t/g:.2f} (goal >=0.6)  tw10/reference={t/1.5e6:.1f}x (goal >=4)  tw100/tw10={h/t:.2f} (goal >=0.7)')"; \
	 done
	@python3 $(BENCH)/latency.py $(BIN) 200
	@echo "idle, glibc+TLS build:   $$($(BENCH)/idle_footprint.sh $(BIN) 100 10)"
	@if rustup target list --installed 2>/dev/null | grep -q $(MUSL); then \
	   $(MAKE) -s static >/dev/null 2>&1 && \
	   echo "== static musl binary (no TLS): $$(stat -c %s $(STATIC)) bytes" && \
	   echo "idle, static musl build: $$($(BENCH)/idle_footprint.sh $(STATIC) 100 10)" && \
	   echo "static tw10: $$($(BENCH)/follow_throughput.sh $(STATIC) $(BENCHDIR)/lines.txt $$(grep -c ERRMARK $(BENCHDIR)/lines.txt))"; \
	 else echo "(rustup target add $(MUSL) to measure the static build)"; fi
	@echo "== one-shot modes and streams (bench/, each figure a median or three runs side by side)"
	@echo "until-match startup, 1-line file (goal: median < 5 ms): $$(bench/until_match_startup.sh $(BIN))"
	@for i in 1 2 3; do \
	   g=$$($(BENCH)/grep_ceiling.sh $(BENCHDIR)/lines.txt); echo "grep  $$g"; \
	   o=$$(SHARED=$(BENCH) bench/once_throughput.sh $(BIN) $(BENCHDIR)/lines.txt); echo "--once, 10 rules: $$o"; \
	   python3 -c "import re; f=lambda p, s: float(re.search(p + ' .*?lines_per_s=([0-9,]+)', s).group(1).replace(',','')); G, O = '''$$g''', '''$$o'''; g, a, b = f('grep', G), f('once', O), f('once[+]state', O); print(f'ratios: once/grep={a/g:.2f} once+state/grep={b/g:.2f} (goal >=0.6)')"; \
	 done
	@echo "check -n 100, 1 GiB file (goal: median < 50 ms): $$(BENCHDIR=$(BENCHDIR) bench/check_tail.sh $(BIN))"
	@for i in 1 2 3; do \
	   echo "one stream, 1 M lines, 10 rules (no goal; ws vs websocketd alone): $$(SHARED=$(BENCH) bench/stream_throughput.sh $(BIN) $(BENCHDIR)/lines.txt)"; \
	 done
	@echo "50 idle tcp streams, glibc+TLS (goal: < 4096 KiB, 1 process): $$(bench/idle_streams.sh $(BIN) 50 10)"
	@if rustup target list --installed 2>/dev/null | grep -q $(MUSL); then \
	   $(MAKE) -s static >/dev/null 2>&1 && \
	   echo "50 idle tcp streams, static musl (goal: < 4096 KiB, 1 process): $$(bench/idle_streams.sh $(STATIC) 50 10)" && \
	   echo "until-match startup, static musl (goal: median < 5 ms): $$(bench/until_match_startup.sh $(STATIC))"; \
	 fi

clean:
	$(CARGO) clean
	rm -rf run
