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
