# test_cli runs the system python3 (numpy) to make float32 tiles with chosen values.
if(TARGET test_cli)
  target_compile_definitions(test_cli PRIVATE TESSERA_PYTHON3="${SYSTEM_PYTHON3}")
endif()
# cmake --install into a temporary prefix, moved elsewhere, runs on its own (RPATH $ORIGIN/../lib,
# ONNX Runtime installed next to it, no path into the source or build directory).
add_test(NAME cli_install_relocatable
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/install_test.sh ${CMAKE_BINARY_DIR}
                 ${CMAKE_SOURCE_DIR} ${TESSERA_TEST_TMP}/install_test)
set_tests_properties(cli_install_relocatable PROPERTIES LABELS cli TIMEOUT 120)
