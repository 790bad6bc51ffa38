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
# scripts/setup.sh --for run installs no test-only package, --for test all of them, and neither
# runs apt-get when nothing is missing (against stand-ins for apt-get and dpkg-query).
add_test(NAME setup_packages
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/cli/setup_packages_test.sh ${CMAKE_SOURCE_DIR}
                 ${TESSERA_TEST_TMP}/setup_packages)
set_tests_properties(setup_packages PROPERTIES LABELS cli TIMEOUT 300)
# Every command in README.md and docs/*.md runs as written, at small sizes (or is listed with the
# reason it cannot run here and the test that covers it instead).
add_test(NAME doc_commands
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/cli/doc_commands_test.py"
                 --tessera "${TESSERA_BIN}" --source "${CMAKE_SOURCE_DIR}"
                 --workdir "${TESSERA_TEST_TMP}/doc_commands")
set_tests_properties(doc_commands PROPERTIES LABELS cli TIMEOUT 900)
