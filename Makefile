# tune: build, test and demo. `make` builds the CPU program; `make cuda` adds the
# CUDA parts when nvcc is on PATH; `make test` runs every test that needs no GPU,
# `make test-cuda` the CUDA backend's tests (nvcc and a GPU).

CC      ?= cc
NVCC    ?= nvcc
BUILD   ?= build
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L
# Messages and names are cut to their fixed buffers on purpose: no truncation warnings.
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wno-format-truncation
OPT     ?= -O2 -g
CFLAGS  += $(CSTD) $(WARN) $(OPT) -fopenmp -Isrc -MMD -MP
LDLIBS  += -lcjson -lpcre2-8 -lutf8proc -lopenblas -lyaml -lm
LDFLAGS += -fopenmp

ifeq ($(CI),true)
CFLAGS  += -Werror
endif
# `make SAN=1 test`: address and undefined-behaviour sanitizers.
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
BUILD   := $(BUILD)-san
endif

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c src/*/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIB      := $(BUILD)/libtune.a

Q := @
ifeq ($(V),1)
Q :=
endif

.PHONY: all deps test demo cuda test-cuda cuda-nvcc fuzz fuzz-short clean
.SECONDARY:
all: $(BUILD)/tune

deps:
	./tools/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The CPU backend's vector loops (src/backend/cpu/vec_math.h) need their float
# compares turned into selects, which GCC does only where a compare may not
# trap (values and rounding unchanged), and no FMA contraction, so that every
# ISA level they are compiled for rounds alike.
$(BUILD)/src/backend/cpu/vec_math.o $(BUILD)/src/backend/cpu/swiglu.o: CFLAGS += -fno-trapping-math -ffp-contract=off

$(LIB): $(LIB_OBJ)
	@echo "  AR    $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/tune: $(CLI_OBJ) $(LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

# Each test binary runs from the repository root so fixtures resolve alike.
test: $(TESTS) $(BUILD)/tune
	@failed=0; for t in $(TESTS); do \
	    echo "== $$t"; $$t || failed=1; \
	done; \
	TUNE=$(BUILD)/tune sh tests/cli_test.sh || failed=1; \
	$(MAKE) --no-print-directory fuzz-short || failed=1; \
	if [ $$failed -ne 0 ]; then echo "make test: FAILED"; exit 1; fi; \
	echo "make test: all passed"

# Fuzzing: one libFuzzer target per parser (tests/fuzz/fuzz_*.c), built by clang with
# ASan and UBSan over the library sources they need, into $(BUILD)/fuzz. `make fuzz` runs
# each for FUZZ_SECONDS (-j runs several at once); `make test` runs each for
# FUZZ_TEST_SECONDS, and skips that step, saying so, where clang cannot link libFuzzer
# (`make deps` installs it) or under SAN=1 (the targets carry both sanitizers already).
# New inputs stay in $(BUILD)/fuzz/corpus, crashes in $(BUILD)/fuzz/crashes.
FUZZ_CC           ?= clang
FUZZ_SECONDS      ?= 60
FUZZ_TEST_SECONDS ?= 5
FUZZ_CFLAGS  := $(CSTD) $(filter-out -Wno-format-truncation,$(WARN)) -g -O1 -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=all -Isrc -MMD -MP
ifeq ($(CI),true)
FUZZ_CFLAGS  += -Werror
endif
FUZZ_LIB_SRC := $(wildcard src/base/*.c src/io/*.c src/text/*.c src/data/*.c) src/model/spec.c \
                src/model/presets.c src/model/layout.c
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(BUILD)/fuzz/%.o)
FUZZ_NAMES   := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)

$(BUILD)/fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  FUZZCC $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/libtune_fuzz.a: $(FUZZ_LIB_OBJ)
	@echo "  AR    $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/tests/fuzz/fuzz_%.o $(BUILD)/fuzz/libtune_fuzz.a
	@echo "  LINK  $@"
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined $^ -lcjson -lpcre2-8 -lutf8proc -lm -o $@

fuzz: $(FUZZ_NAMES:%=fuzz-run-%)
fuzz-run-%: $(BUILD)/fuzz/%
	@sh tests/fuzz/run.sh run $(BUILD)/fuzz $(FUZZ_SECONDS) $*

fuzz-short:
ifeq ($(SAN),1)
	@echo "== fuzz: skipped under SAN=1 (make test runs the fuzz targets, built with ASan and UBSan)"
else
	@if sh tests/fuzz/run.sh check $(FUZZ_CC); then \
	    echo "== fuzz: $(FUZZ_TEST_SECONDS) s per target"; \
	    $(MAKE) -s --no-print-directory $(FUZZ_BINS) && \
	    sh tests/fuzz/run.sh run $(BUILD)/fuzz $(FUZZ_TEST_SECONDS) $(FUZZ_NAMES); \
	else \
	    echo "== fuzz: SKIPPED: $(FUZZ_CC) cannot build libFuzzer targets (install clang and libclang-rt-dev: make deps)"; \
	fi
endif

# Benchmarks (bench/): programs over the library, not run by `make test`.
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The embedded default job. Training arrives with the CPU engine; until then
# the demo plans the bundled runs.
demo: $(BUILD)/tune
	sh tools/demo.sh $(BUILD)/tune

# CUDA parts, never built by `make` or `make test`: the CUDA backend
# (src/backend/cuda/*.cu) as its own archive, its op tests, and the probe that
# measures the CUDA context (tools/cuda/). `make cuda` compiles and links them
# (no GPU needed); `make test-cuda` also runs the tests (needs a GPU).
# CUDA_ARCH picks the target: Hopper's sm_90a by default (HOPPER.md: the
# -gencode form), e.g. CUDA_ARCH=-gencode=arch=compute_80,code=sm_80 for Ampere.
CUDA_HOME   ?= /usr/local/cuda
CUDA_ARCH   ?= -gencode=arch=compute_90a,code=sm_90a
NVCCFLAGS   ?= -O2 -g -lineinfo
NVCCFLAGS   += -std=c++20 $(CUDA_ARCH) -Isrc -Xcompiler -Wall,-Wextra -MMD -MP
ifeq ($(CI),true)
NVCCFLAGS   += -Werror all-warnings
endif
CUDA_LDLIBS ?= -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart -lstdc++ -ldl -lpthread -lrt
CUDA_SRC    := $(wildcard src/backend/cuda/*.cu)
CUDA_OBJ    := $(CUDA_SRC:%.cu=$(BUILD)/%.o)
CUDA_LIB    := $(BUILD)/libtune_cuda.a
CUDA_TESTS  := $(patsubst tests/cuda/%.c,$(BUILD)/tests/cuda/%,$(wildcard tests/cuda/test_*.c))

cuda-nvcc:
	@command -v $(NVCC) >/dev/null || { echo "make cuda: nvcc not found on PATH"; exit 1; }

$(BUILD)/%.o: %.cu | cuda-nvcc
	@mkdir -p $(dir $@)
	@echo "  NVCC  $<"
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(CUDA_LIB): $(CUDA_OBJ)
	@echo "  AR    $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/cuda/%: $(BUILD)/tests/cuda/%.o $(CUDA_LIB) $(LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(CUDA_LDLIBS) $(LDLIBS) -o $@

$(BUILD)/cuda/context_memory: tools/cuda/context_memory.cu | cuda-nvcc
	@mkdir -p $(dir $@)
	@echo "  NVCC  $<"
	$(Q)$(NVCC) -O2 $(CUDA_ARCH) -o $@ $< -lcublasLt

# The tune program with the CUDA backend: the CLI with cli/device.c built for CUDA.
CUDA_CLI_OBJ := $(filter-out $(BUILD)/src/cli/device.o,$(CLI_OBJ)) $(BUILD)/cuda/cli/device.o
$(BUILD)/cuda/cli/device.o: src/cli/device.c
	@mkdir -p $(dir $@)
	@echo "  CC    $< (TUNE_WITH_CUDA)"
	$(Q)$(CC) $(CFLAGS) -DTUNE_WITH_CUDA -c $< -o $@

$(BUILD)/cuda/tune: $(CUDA_CLI_OBJ) $(CUDA_LIB) $(LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(CUDA_LDLIBS) $(LDLIBS) -o $@

# The timed training step of bench/gpu/ (bench_gpu_train.py runs it beside transformers+PEFT).
$(BUILD)/cuda/train_step: $(BUILD)/bench/gpu/train_step.o $(CUDA_LIB) $(LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(CUDA_LDLIBS) $(LDLIBS) -o $@

cuda: $(CUDA_LIB) $(CUDA_TESTS) $(BUILD)/cuda/context_memory $(BUILD)/cuda/tune $(BUILD)/cuda/train_step

# Every CUDA op against the CPU op on random inputs; a non-zero exit on any failure.
test-cuda: $(CUDA_TESTS)
	@failed=0; for t in $(CUDA_TESTS); do echo "== $$t"; $$t || failed=1; done; \
	if [ $$failed -ne 0 ]; then echo "make test-cuda: FAILED"; exit 1; fi; \
	echo "make test-cuda: all passed"

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TESTS:=.d) $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BINS:$(BUILD)/fuzz/%=$(BUILD)/fuzz/tests/fuzz/%.d) $(CUDA_OBJ:.o=.d) $(CUDA_TESTS:=.d) \
         $(BUILD)/bench/gpu/train_step.d $(BUILD)/cuda/cli/device.d
