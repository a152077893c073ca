# The one LibTorch this project builds on: the one inside a PyTorch wheel (2.x, C++11 ABI), found
# through its Python (`torch.utils.cmake_prefix_path`) or a given Torch_DIR. Everything torch links
# against comes from that wheel: its libraries, and for a CUDA wheel its CUDA runtime, NCCL and
# headers (site-packages/nvidia/*), never a system CUDA toolkit's copies. Refuses a LibTorch mixed
# from several prefixes and an old-ABI or too old LibTorch, naming the paths and the fix.
#
# Sets: C2C_TORCH_PREFIX, C2C_TORCH_VERSION, C2C_TORCH_CUDA_VERSION ("" for a CPU LibTorch),
# C2C_TORCH_HAS_CUDA (target torch_cuda found), C2C_TORCH_HAS_NCCL, C2C_TORCH_HAS_GLOO,
# C2C_CUDART_LIBRARY, and the target torch::cudart (the wheel's runtime, its headers with it).

set(C2C_TORCH_MIN_VERSION 2.7)  # the first PyTorch wheels on PyPI built with the C++11 ABI

# ---- where the wheel is ------------------------------------------------------------------------
if(NOT Torch_DIR)
  if(NOT C2C_PYTHON)
    if(EXISTS "${CMAKE_SOURCE_DIR}/.venv/bin/python")
      set(C2C_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python")  # made by scripts/setup.sh
    else()
      find_program(C2C_PYTHON NAMES python3 python)
    endif()
  endif()
  set(C2C_PYTHON "${C2C_PYTHON}" CACHE FILEPATH "The Python whose torch wheel provides LibTorch")
  if(NOT C2C_PYTHON)
    message(FATAL_ERROR "c2c: no Python found to locate PyTorch's LibTorch\n"
      "HINT: bash scripts/setup.sh makes .venv with torch; or pass -DC2C_PYTHON=/path/to/python "
      "or -DTorch_DIR=<site-packages>/torch/share/cmake/Torch")
  endif()
  execute_process(COMMAND "${C2C_PYTHON}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _c2c_prefix_path ERROR_VARIABLE _c2c_py_err RESULT_VARIABLE _c2c_py_rc
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _c2c_py_rc EQUAL 0)
    message(FATAL_ERROR "c2c: ${C2C_PYTHON} cannot import torch:\n${_c2c_py_err}\n"
      "HINT: bash scripts/setup.sh installs torch into .venv; or pip install torch into that Python")
  endif()
  set(Torch_DIR "${_c2c_prefix_path}/Torch" CACHE PATH "LibTorch's CMake folder" FORCE)
endif()
get_filename_component(C2C_TORCH_PREFIX "${Torch_DIR}/../../.." ABSOLUTE)
if(NOT EXISTS "${C2C_TORCH_PREFIX}/lib/libtorch_cpu.so")
  message(FATAL_ERROR "c2c: Torch_DIR=${Torch_DIR} is not the CMake folder of a LibTorch "
    "(no ${C2C_TORCH_PREFIX}/lib/libtorch_cpu.so)\n"
    "HINT: python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' prints the folder "
    "above it")
endif()

# Everything of the wheel is pinned before TorchConfig runs: its find_dependency(Caffe2) and
# find_library(c10 / torch) search the system prefixes before the wheel's own folder and would
# mix in another LibTorch (Debian's libtorch-dev) if one is installed.
set(Caffe2_DIR "${C2C_TORCH_PREFIX}/share/cmake/Caffe2" CACHE PATH "" FORCE)
set(c10_LIBRARY "${C2C_TORCH_PREFIX}/lib/libc10.so" CACHE FILEPATH "" FORCE)
set(TORCH_LIBRARY "${C2C_TORCH_PREFIX}/lib/libtorch.so" CACHE FILEPATH "" FORCE)
# The wheels build kineto (the profiler) into libtorch_cpu.so; TorchConfig still looks for a
# libkineto.so and warns on every configure. Naming the library that holds it ends the search.
if(NOT EXISTS "${C2C_TORCH_PREFIX}/lib/libkineto.so")
  set(kineto_LIBRARY "${C2C_TORCH_PREFIX}/lib/libtorch_cpu.so" CACHE FILEPATH "" FORCE)
endif()
set(C10_CUDA_LIBRARY "${C2C_TORCH_PREFIX}/lib/libc10_cuda.so" CACHE FILEPATH "" FORCE)

# ---- the wheel's CUDA runtime ------------------------------------------------------------------
# A CUDA wheel records its CUDA version in torch/version.py; its runtime, NCCL and headers are the
# nvidia-* wheels beside it (site-packages/nvidia/<pkg>/{lib,include}).
set(C2C_TORCH_CUDA_VERSION "")
if(EXISTS "${C2C_TORCH_PREFIX}/version.py")
  file(STRINGS "${C2C_TORCH_PREFIX}/version.py" _c2c_cuda_line REGEX "^cuda.*= *'[0-9]")
  if(_c2c_cuda_line MATCHES "'([0-9.]+)'")
    set(C2C_TORCH_CUDA_VERSION "${CMAKE_MATCH_1}")
  endif()
endif()
if(EXISTS "${C2C_TORCH_PREFIX}/lib/libtorch_cuda.so" AND NOT TARGET torch::cudart)
  get_filename_component(_c2c_nvidia "${C2C_TORCH_PREFIX}/../nvidia" ABSOLUTE)
  if(NOT C2C_CUDART_LIBRARY)
    file(GLOB _c2c_cudart "${_c2c_nvidia}/*/lib/libcudart.so.[0-9]*")
    if(_c2c_cudart)
      list(SORT _c2c_cudart)
      list(GET _c2c_cudart 0 _c2c_cudart)
      set(C2C_CUDART_LIBRARY "${_c2c_cudart}")
    endif()
  endif()
  set(C2C_CUDART_LIBRARY "${C2C_CUDART_LIBRARY}" CACHE FILEPATH "The CUDA runtime LibTorch loads")
  if(NOT C2C_CUDART_LIBRARY OR NOT EXISTS "${C2C_CUDART_LIBRARY}")
    message(FATAL_ERROR "c2c: LibTorch at ${C2C_TORCH_PREFIX} is a CUDA build but its CUDA runtime "
      "was not found under ${_c2c_nvidia}/*/lib\n"
      "HINT: install torch from a wheel (pip install torch pulls the nvidia-* runtime wheels), or "
      "pass -DC2C_CUDART_LIBRARY=<libcudart.so.N that LibTorch loads> and "
      "-DC2C_CUDA_INCLUDE_DIRS=<its headers>")
  endif()
  if(NOT C2C_CUDA_INCLUDE_DIRS)
    file(GLOB C2C_CUDA_INCLUDE_DIRS LIST_DIRECTORIES true "${_c2c_nvidia}/*/include")
  endif()
  # torch_cuda / c10_cuda link torch::cudart; defining it here stops Caffe2's public/cuda.cmake
  # (it returns early), which would otherwise look for the system toolkit's runtime and guess GPU
  # architectures from TORCH_CUDA_ARCH_LIST (sm_50 without a GPU, which nvcc 13 refuses).
  # Its headers go to C++ only: nvcc compiles .cu files against its own toolkit's headers.
  add_library(torch::cudart INTERFACE IMPORTED)
  set_target_properties(torch::cudart PROPERTIES
    INTERFACE_LINK_LIBRARIES "${C2C_CUDART_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "$<$<COMPILE_LANGUAGE:CXX>:${C2C_CUDA_INCLUDE_DIRS}>")
endif()

# The wheels link MKL statically into libtorch_cpu.so; Caffe2's public/mkl.cmake would still make a
# caffe2::mkl target with link folders under an empty MKL_ROOT (/lib/intel64, ...), which end up
# in every program's RUNPATH. An empty target stops it (mkl.cmake returns when one exists).
if(NOT TARGET caffe2::mkl)
  add_library(caffe2::mkl INTERFACE IMPORTED)
endif()

find_package(Torch REQUIRED CONFIG)

# ---- configure tells the truth ---------------------------------------------------------------
set(C2C_TORCH_VERSION "${Torch_VERSION}")
if(C2C_TORCH_VERSION VERSION_LESS C2C_TORCH_MIN_VERSION)
  message(FATAL_ERROR "c2c: LibTorch ${C2C_TORCH_VERSION} at ${C2C_TORCH_PREFIX} is older than "
    "${C2C_TORCH_MIN_VERSION}, the oldest this project builds on\n"
    "HINT: bash scripts/setup.sh installs the tested torch into .venv")
endif()
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
  message(FATAL_ERROR "c2c: LibTorch ${C2C_TORCH_VERSION} at ${C2C_TORCH_PREFIX} uses the old "
    "pre-C++11 ABI; GoogleTest, HDF5 and yaml-cpp from the system use the C++11 ABI and cannot "
    "link with it\nHINT: use torch >= ${C2C_TORCH_MIN_VERSION} from PyPI (C++11 ABI)")
endif()
# Every library of the LibTorch must come from the one prefix.
set(_c2c_torch_files "${TORCH_LIBRARY}" "${c10_LIBRARY}" "${Caffe2_DIR}")
foreach(_t torch_cpu torch_cuda c10 c10_cuda)
  if(TARGET ${_t})
    get_target_property(_loc ${_t} IMPORTED_LOCATION_RELEASE)
    if(NOT _loc)
      get_target_property(_loc ${_t} IMPORTED_LOCATION)
    endif()
    list(APPEND _c2c_torch_files "${_loc}")
  endif()
endforeach()
foreach(_f ${_c2c_torch_files})
  get_filename_component(_real "${_f}" REALPATH)
  get_filename_component(_prefix_real "${C2C_TORCH_PREFIX}" REALPATH)
  string(FIND "${_real}" "${_prefix_real}/" _at)
  if(NOT _at EQUAL 0)
    message(FATAL_ERROR "c2c: mixed LibTorch: ${_f} is not under ${C2C_TORCH_PREFIX} (Torch_DIR "
      "${Torch_DIR})\nHINT: remove the other LibTorch (apt-get remove libtorch-dev) or point "
      "Torch_DIR and Caffe2_DIR at the same wheel; delete the build folder's CMakeCache.txt")
  endif()
endforeach()

set(C2C_TORCH_HAS_CUDA OFF)
set(C2C_TORCH_HAS_NCCL OFF)
set(C2C_TORCH_HAS_GLOO OFF)
if(TARGET torch_cuda)
  set(C2C_TORCH_HAS_CUDA ON)
  get_target_property(_defs torch_cuda INTERFACE_COMPILE_DEFINITIONS)
  if("USE_C10D_NCCL" IN_LIST _defs)
    set(C2C_TORCH_HAS_NCCL ON)
  endif()
endif()
if(TARGET torch_cpu)
  get_target_property(_defs torch_cpu INTERFACE_COMPILE_DEFINITIONS)
  if("USE_C10D_GLOO" IN_LIST _defs)
    set(C2C_TORCH_HAS_GLOO ON)
  endif()
endif()
if(C2C_TORCH_HAS_GLOO AND NOT EXISTS /usr/include/gloo/config.h AND NOT C2C_GLOO_INCLUDE_DIR)
  message(FATAL_ERROR "c2c: LibTorch has Gloo but the gloo headers (not shipped in the wheel) are "
    "missing\nHINT: apt-get install libgloo-dev (scripts/setup.sh does)")
endif()
if(C2C_TORCH_HAS_CUDA AND NOT C2C_TORCH_CUDA_VERSION)
  set(C2C_TORCH_CUDA_VERSION "unknown")
endif()
