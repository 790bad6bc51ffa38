# tessera report / project from the outside: SVG well-formedness and structure, exact errors,
# projections recomputed in Python; then a Chromium render of every chart (skipped, exit 77,
# when Chromium is not installed).
add_test(NAME bench_report_svg
         COMMAND ${SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/reference/check_svg.py report
                 --tessera ${TESSERA_BIN} --data ${CMAKE_SOURCE_DIR}/tests/report/data
                 --out ${TESSERA_TEST_TMP}/bench_report_svg)
set_tests_properties(bench_report_svg PROPERTIES LABELS report TIMEOUT 120)

add_test(NAME bench_report_render
         COMMAND ${SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/reference/check_svg.py render
                 --tessera ${TESSERA_BIN} --data ${CMAKE_SOURCE_DIR}/tests/report/data
                 --out ${TESSERA_TEST_TMP}/bench_report_render)
set_tests_properties(bench_report_render PROPERTIES LABELS report TIMEOUT 300 SKIP_RETURN_CODE 77)
