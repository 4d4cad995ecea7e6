# tune: build, test and demo. `make` builds the CPU program; `make cuda` adds the
# CUDA parts when nvcc is on PATH; `make test` runs every test that needs no GPU.

CC      ?= cc
NVCC    ?= nvcc
BUILD   ?= build
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L
# Messages and names are cut to their fixed buffers on purpose: no truncation warnings.
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wno-format-truncation
OPT     ?= -O2 -g
CFLAGS  += $(CSTD) $(WARN) $(OPT) -fopenmp -Isrc -MMD -MP
LDLIBS  += -lcjson -lpcre2-8 -lopenblas -lyaml -lm
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

.PHONY: all deps test demo cuda clean
.SECONDARY:
all: $(BUILD)/tune

deps:
	./tools/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

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
	if [ $$failed -ne 0 ]; then echo "make test: FAILED"; exit 1; fi; \
	echo "make test: all passed"

# The embedded default job. Training arrives with the CPU engine; until then
# the demo plans the bundled runs.
demo: $(BUILD)/tune
	sh tools/demo.sh $(BUILD)/tune

# CUDA parts: for now the probe that measures the CUDA context (tools/cuda/).
cuda:
	@command -v $(NVCC) >/dev/null || { echo "make cuda: nvcc not found on PATH"; exit 1; }
	@mkdir -p $(BUILD)/cuda
	$(NVCC) -O2 -arch=sm_90a -o $(BUILD)/cuda/context_memory tools/cuda/context_memory.cu -lcublasLt

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TESTS:=.d)
