# Zone stores written by tessera (geo/zone_store.h) and read by zarrita (npm), a reader
# tessera did not write, plus GDAL, pyproj, numpy and crc32c. zone_store_writer is a small
# driver that writes one tile from .npy files.
add_executable(zone_store_writer "${CMAKE_CURRENT_LIST_DIR}/zone_store_writer.cpp")
target_link_libraries(zone_store_writer PRIVATE tessera_geo)
if(TARGET test_geo)
  add_dependencies(test_geo zone_store_writer)
endif()

set(_zarrita_dir "${CMAKE_BINARY_DIR}/zarrita")
add_test(NAME geo_install_zarrita
         COMMAND "${CMAKE_SOURCE_DIR}/scripts/install_zarrita.sh" "${_zarrita_dir}")
set_tests_properties(geo_install_zarrita PROPERTIES FIXTURES_SETUP zarrita TIMEOUT 320)
# Cases that run `tessera` itself: infer (GeoTIFFs and store of north, south and zone-edge
# tiles), refused, infer_concurrent and infer_killed (10 trials each of real infer runs),
# export_upstream. The others drive zone_store_writer.
foreach(_case infer refused infer_concurrent infer_killed export_upstream values errors limits
        killed)
  add_test(NAME geo_zone_store_${_case}
           COMMAND "${SYSTEM_PYTHON3}" "${CMAKE_CURRENT_LIST_DIR}/zone_store_test.py" ${_case}
                   "$<TARGET_FILE:zone_store_writer>" "${_zarrita_dir}"
                   "${TESSERA_TEST_TMP}/zone_store_${_case}" "${TESSERA_BIN}")
  set_tests_properties(geo_zone_store_${_case} PROPERTIES FIXTURES_REQUIRED zarrita
                       SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS geo)
endforeach()
# About 40 infer runs each: a minute in Release on 2 busy cores, more under ASan.
set_tests_properties(geo_zone_store_infer_concurrent geo_zone_store_infer_killed
                     PROPERTIES TIMEOUT 900)

# `tessera infer --format geotiff` and `tessera export`, read back by GDAL, pyproj and numpy:
# three places (the demo's cell, a southern one, one on a UTM zone's edge), the bad inputs with
# their exact messages, and the export of existing .npy outputs.
foreach(_case infer errors export)
  add_test(NAME geotiff_cli_${_case}
           COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/geo/geotiff_cli_test.py"
                   --case ${_case} --tessera "${TESSERA_BIN}"
                   --workdir "${TESSERA_TEST_TMP}/geotiff_cli_${_case}")
  set_tests_properties(geotiff_cli_${_case} PROPERTIES LABELS geo TIMEOUT 180)
endforeach()
