"""The CUDA kernels, tested without a GPU on a host emulator.

gen.py rewrites csrc/deformable_attn/cuda/cuda_kernels.cu (on every run) into C++ that includes
emu_shim.h, which runs each warp as 32 ucontext fibers and checks warp collectives,
16-byte alignment, shared memory bounds and launch configurations (what is emulated and
what is not: see emu_shim.h). conftest.py builds it with torch.utils.cpp_extension.load;
test_emulated_kernels.py compares it with the CPU ops. Linux only.

    python -m pytest -q tests/cuda_emulation

Environment: LITE_DETR_EMU_CACHE (build cache, default ~/.cache/lite_detr_plugin/emu,
empty for none); LITE_DETR_EMU_FLAGS (extra compiler flags). Out-of-bounds global memory
accesses are only seen under AddressSanitizer:

    LITE_DETR_EMU_FLAGS="-fsanitize=address -fno-omit-frame-pointer" ASAN_OPTIONS=detect_leaks=0 \\
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) python -m pytest -q tests/cuda_emulation \\
        -k "not requires_shared_memory_optin and not limit_raises"

(ASan's C++ exception interceptor fails under LD_PRELOAD, so the two tests that expect an
exception are left out.)
"""
