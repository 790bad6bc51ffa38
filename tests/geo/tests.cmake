# Zone stores written by tessera (geo/zone_store.h) and read by zarrita (npm), a reader
# tessera did not write, plus numpy and crc32c for the shard bytes. zone_store_writer is a
# small driver that writes one tile from .npy files.
add_executable(zone_store_writer "${CMAKE_CURRENT_LIST_DIR}/zone_store_writer.cpp")
target_link_libraries(zone_store_writer PRIVATE tessera_geo)
if(TARGET test_geo)
  add_dependencies(test_geo zone_store_writer)
endif()

set(_zarrita_dir "${CMAKE_BINARY_DIR}/zarrita")
add_test(NAME geo_install_zarrita
         COMMAND "${CMAKE_SOURCE_DIR}/scripts/install_zarrita.sh" "${_zarrita_dir}")
set_tests_properties(geo_install_zarrita PROPERTIES FIXTURES_SETUP zarrita TIMEOUT 320)
foreach(_case values errors limits concurrent killed)
  add_test(NAME geo_zone_store_${_case}
           COMMAND "${SYSTEM_PYTHON3}" "${CMAKE_CURRENT_LIST_DIR}/zone_store_test.py" ${_case}
                   "$<TARGET_FILE:zone_store_writer>" "${_zarrita_dir}"
                   "${TESSERA_TEST_TMP}/zone_store_${_case}")
  set_tests_properties(geo_zone_store_${_case} PROPERTIES FIXTURES_REQUIRED zarrita
                       SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS geo)
endforeach()
