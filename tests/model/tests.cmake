# make-model against an independent numpy forward pass (tests/reference/model_oracle.py):
# ORT's output through `tessera run-model` vs float64 numpy, parameter and node counts, no
# ScatterND. Builds the default 45.8 M-parameter model once (~183 MB in TESSERA_TEST_TMP).
add_test(NAME model_oracle
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_SOURCE_DIR}/tests/reference/model_oracle.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/model_oracle")
set_tests_properties(model_oracle PROPERTIES LABELS model TIMEOUT 300)
