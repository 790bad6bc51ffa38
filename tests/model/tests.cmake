# test_model reads the metadata of the files it writes with python3's onnx too (a reader tessera
# did not write).
if(TARGET test_model)
  target_compile_definitions(test_model PRIVATE TESSERA_PYTHON3="${SYSTEM_PYTHON3}")
endif()

# make-model against an independent numpy forward pass (tests/reference/model_oracle.py):
# ORT's output through `tessera run-model` vs float64 numpy, parameter and node counts, no
# ScatterND. Builds the default 45.8 M-parameter model once (~183 MB in TESSERA_TEST_TMP).
add_test(NAME model_oracle
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_SOURCE_DIR}/tests/reference/model_oracle.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/model_oracle")
set_tests_properties(model_oracle PROPERTIES LABELS model TIMEOUT 300)

# The model family (make-model --arch, import) against independent PyTorch modules
# (tools/tessera_torch.py): ORT vs torch within 1e-4 relative at several step counts,
# imported checkpoints, the bad cases of import, the released parameter counts. Exit 77 (skip)
# when the system Python has no torch.
add_test(NAME model_family_torch
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_SOURCE_DIR}/tests/reference/family_torch_test.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/model_family_torch")
set_tests_properties(model_family_torch PROPERTIES LABELS model TIMEOUT 600 SKIP_RETURN_CODE 77)

# tessera import on hostile and malformed checkpoints (tests/reference/import_safety_test.py):
# code named by a pickle is refused and not run, no PyTorch needed to read, dtypes and values
# as torch has them, non-float / NaN / infinite tensors refused, shapes checked before values,
# the transposed key blamed, Ctrl-C and SIGTERM leave no temporary files, non-string keys and the
# legacy format refused, Namespace args read. Torch writes the checkpoints: exit 77 without it.
foreach(case code_in_pickle needs_no_torch reader_dtypes non_float_tensors nan_inf
        shapes_before_values transposed_key interrupt non_string_key legacy_format
        namespace_args)
  add_test(NAME import_${case}
           COMMAND ${SYSTEM_PYTHON3} "${CMAKE_SOURCE_DIR}/tests/reference/import_safety_test.py"
                   --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/import_${case}"
                   --case ${case})
  set_tests_properties(import_${case} PROPERTIES LABELS model TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()
