# Finds every external dependency. Each is a Debian package installed by scripts/setup.sh,
# except ONNX Runtime, which comes from ONNXRUNTIME_ROOT (include/ + lib/).

find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(fmt REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)  # libssl-dev: SHA-256 of model files
find_package(Protobuf REQUIRED)
find_package(ONNX REQUIRED)  # libonnx-dev: the ONNX protobuf types used by make-model
find_package(OpenMP REQUIRED)  # oneDNN's threading (Debian builds it with OpenMP)
# libdnnl-dev: the native CPU engine's matmuls. Found by hand: Debian's dnnl-config.cmake
# requires the OpenCL headers (its GPU runtime), which a CPU-only build does not need.
find_path(DNNL_INCLUDE_DIR dnnl.hpp)
find_library(DNNL_LIBRARY dnnl)
if(NOT DNNL_INCLUDE_DIR OR NOT DNNL_LIBRARY)
  message(FATAL_ERROR "oneDNN not found (apt install libdnnl-dev, or run scripts/setup.sh)")
endif()
add_library(DNNL::dnnl SHARED IMPORTED)
set_target_properties(DNNL::dnnl PROPERTIES
  IMPORTED_LOCATION "${DNNL_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
find_package(PkgConfig REQUIRED)
pkg_check_modules(HWLOC REQUIRED IMPORTED_TARGET hwloc>=2.0)
# Geospatial outputs: GDAL (libgdal-dev) reads roi.tiff, transforms CRSs and writes GeoTIFFs;
# c-blosc (libblosc-dev, with zstd) compresses the chunks of Zarr stores.
find_package(GDAL 3.4 REQUIRED)
pkg_check_modules(BLOSC REQUIRED IMPORTED_TARGET blosc>=1.21)

# A build directory configured again with another ONNXRUNTIME_ROOT looks there, not in the
# cached paths of the previous one.
if(DEFINED TESSERA_ORT_ROOT_SEARCHED AND NOT "${ONNXRUNTIME_ROOT}" STREQUAL "${TESSERA_ORT_ROOT_SEARCHED}")
  unset(ONNXRUNTIME_INCLUDE_DIR CACHE)
  unset(ONNXRUNTIME_LIBRARY CACHE)
endif()
set(TESSERA_ORT_ROOT_SEARCHED "${ONNXRUNTIME_ROOT}" CACHE INTERNAL "ONNXRUNTIME_ROOT of the last search")
find_path(ONNXRUNTIME_INCLUDE_DIR onnxruntime_cxx_api.h
          PATHS "${ONNXRUNTIME_ROOT}/include" "${ONNXRUNTIME_ROOT}/include/onnxruntime" NO_DEFAULT_PATH)
find_library(ONNXRUNTIME_LIBRARY onnxruntime PATHS "${ONNXRUNTIME_ROOT}/lib" NO_DEFAULT_PATH)
if(NOT ONNXRUNTIME_INCLUDE_DIR OR NOT ONNXRUNTIME_LIBRARY)
  message(FATAL_ERROR "ONNX Runtime not found in ONNXRUNTIME_ROOT='${ONNXRUNTIME_ROOT}'. "
                      "Run scripts/setup.sh or pass -DONNXRUNTIME_ROOT=/path/to/onnxruntime-linux-x64-1.2x")
endif()
add_library(onnxruntime::onnxruntime SHARED IMPORTED)
set_target_properties(onnxruntime::onnxruntime PROPERTIES
  IMPORTED_LOCATION "${ONNXRUNTIME_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${ONNXRUNTIME_INCLUDE_DIR}")
get_filename_component(ONNXRUNTIME_LIBRARY_DIR "${ONNXRUNTIME_LIBRARY}" DIRECTORY)
# In the build tree the binaries find libonnxruntime.so (and its provider libraries) where they
# were built against. Installed (cmake --install), tessera finds the copies installed into
# <prefix>/lib next to <prefix>/bin, wherever the tree is moved: nothing of the SDK, the source
# or the build directory is needed at run time.
set(CMAKE_BUILD_RPATH "${ONNXRUNTIME_LIBRARY_DIR}")
set(CMAKE_INSTALL_RPATH "\$ORIGIN/../lib")

find_package(MPI COMPONENTS CXX QUIET)
# TESSERA_MPI: `tessera infer` across processes and machines (src/tessera/infer). On by
# default where MPI is found; without it the binary still builds and runs in one process.
option(TESSERA_MPI "Build tessera infer with MPI support" ${MPI_CXX_FOUND})
if(TESSERA_MPI AND NOT MPI_CXX_FOUND)
  message(FATAL_ERROR "TESSERA_MPI is ON but no MPI was found (apt install libopenmpi-dev)")
endif()
