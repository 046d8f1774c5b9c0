# LibTorch for LONGENC_CUDA=OFF: the CPU half of the torch wheel (libtorch_cpu + libc10), with
# no CUDA headers or libraries. find_package(Torch) cannot do this: the PyPI wheel is a CUDA
# build, so its Caffe2Config wants the CUDA toolkit, and its `torch` target links libtorch_cuda
# and the CUDA runtime (about 2 GB of libraries a CPU server never loads). Sets TORCH_LIBRARIES
# to an interface target with the include directories and definitions of the wheel's torch_cpu
# target (Caffe2Targets.cmake).
find_path(LONGENC_TORCH_CMAKE_DIR TorchConfig.cmake PATH_SUFFIXES Torch share/cmake/Torch
          DOC "The torch wheel's share/cmake/Torch (CMAKE_PREFIX_PATH = torch.utils.cmake_prefix_path)")
if(NOT LONGENC_TORCH_CMAKE_DIR)
  message(FATAL_ERROR "LONGENC_CUDA=OFF: TorchConfig.cmake not found; pass "
                      "-DCMAKE_PREFIX_PATH=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')")
endif()
get_filename_component(LONGENC_TORCH_ROOT "${LONGENC_TORCH_CMAKE_DIR}/../../.." ABSOLUTE)
find_library(LONGENC_TORCH_CPU_LIBRARY torch_cpu PATHS "${LONGENC_TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)
find_library(LONGENC_C10_LIBRARY c10 PATHS "${LONGENC_TORCH_ROOT}/lib" NO_DEFAULT_PATH REQUIRED)

add_library(longenc_torch_cpu INTERFACE)
target_include_directories(longenc_torch_cpu SYSTEM INTERFACE
  "${LONGENC_TORCH_ROOT}/include" "${LONGENC_TORCH_ROOT}/include/torch/csrc/api/include")
target_compile_definitions(longenc_torch_cpu INTERFACE
  USE_C10D_GLOO USE_DISTRIBUTED USE_RPC USE_TENSORPIPE)
target_link_libraries(longenc_torch_cpu INTERFACE "${LONGENC_TORCH_CPU_LIBRARY}" "${LONGENC_C10_LIBRARY}")
set(TORCH_LIBRARIES longenc_torch_cpu)
message(STATUS "LONGENC_CUDA=OFF: LibTorch CPU only from ${LONGENC_TORCH_ROOT}")
