# Build settings for llama-cpp-python's bundled llama.cpp, read through
# CMAKE_PROJECT_llama.cpp_INCLUDE (the Makefile sets it in CMAKE_ARGS): CMake runs this file
# right after llama.cpp's project() call, in llama.cpp's own directory scope.

# The Python bindings load only libllama and libggml*; llama-cpp-python forces the "common"
# library (the CLI tools' helpers and an HTTP client) on, which was 43% of the compile.
# A normal variable here shadows that cached value for llama.cpp's CMakeLists.
set(LLAMA_BUILD_COMMON OFF)

# ggml's AMX kernels (chosen by -march=native on Sapphire Rapids and later) crash in
# ggml_backend_amx_mul_mat on such CPUs (llama.cpp issue 20824). Keep every other native
# instruction set (AVX-512 included) and the -O3 of the CPU kernels.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND NOT MSVC)
    include(CheckCCompilerFlag)
    check_c_compiler_flag("-mno-amx-tile" LLAMA_CPP_HAS_NO_AMX)
    if(LLAMA_CPP_HAS_NO_AMX)
        string(APPEND CMAKE_C_FLAGS " -mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
        string(APPEND CMAKE_CXX_FLAGS " -mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
    endif()
endif()
