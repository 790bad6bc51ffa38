# `tessera infer` end to end: the numpy oracle of PIPELINE.md + MODEL.md on synthetic tiles,
# and the SIGKILL / resume test.
add_test(NAME infer_oracle
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_SOURCE_DIR}/tests/reference/infer_oracle.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/infer_oracle")
add_test(NAME infer_kill_resume
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/runtime/kill_resume.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/kill_resume")
# The same with the native engine, and a bf16 journal that an fp32 rerun must not resume.
add_test(NAME infer_kill_resume_native
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/runtime/kill_resume.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/kill_resume_native"
                 --engine native --precision bf16 --other-precision fp32)
# Length-bucketed batches (v1.1 on ORT, v2 on the native engine) resume the same way.
add_test(NAME infer_kill_resume_v1.1
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/runtime/kill_resume.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/kill_resume_v1.1"
                 --arch v1.1)
add_test(NAME infer_kill_resume_v2_native
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/runtime/kill_resume.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/kill_resume_v2_native"
                 --arch v2 --engine native --precision bf16 --other-precision fp32)
# A journal resumes only into the model it names by content: a look-alike model (same size and
# times) or one replaced during a job starts the tile over.
add_test(NAME infer_model_identity_resume
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/runtime/model_identity_resume.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/model_identity_resume")
set_tests_properties(infer_oracle infer_kill_resume infer_kill_resume_native
                     infer_kill_resume_v1.1 infer_kill_resume_v2_native infer_model_identity_resume
                     PROPERTIES LABELS runtime TIMEOUT 300)
# `tessera infer` on v1.0-early, v1.1 and v2 models (both engines): the numpy + PyTorch oracle of
# MODEL_FAMILY.md's tile pipelines on synthetic tiles, and the bad inputs. Needs torch (exit 77).
add_test(NAME family_infer_oracle
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_SOURCE_DIR}/tests/reference/family_infer_test.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/family_infer_oracle")
set_tests_properties(family_infer_oracle PROPERTIES LABELS runtime TIMEOUT 300 SKIP_RETURN_CODE 77)
# The output comparison that scripts/gpu_check.sh uses for CPU vs GPU agreement.
add_test(NAME compare_embeddings
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_SOURCE_DIR}/tests/reference/compare_embeddings_test.py")
set_tests_properties(compare_embeddings PROPERTIES LABELS runtime TIMEOUT 60)
# Two infer runs with different models into one output directory: the tile's lock keeps every
# output wholly one model's, and every exit code and message true.
add_test(NAME infer_concurrent_runs
         COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/runtime/concurrent_runs.py"
                 --tessera "${TESSERA_BIN}" --workdir "${TESSERA_TEST_TMP}/concurrent_runs")
# 20 trials of two runs each: 1.5-2.5 minutes in Release on 2 busy cores, several times that
# under ThreadSanitizer.
set_tests_properties(infer_concurrent_runs PROPERTIES LABELS runtime TIMEOUT 900)
