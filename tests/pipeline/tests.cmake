# test_pipeline compares the C++ pipeline with tests/reference/pipeline_oracle.py (numpy).
if(TARGET test_pipeline)
  target_compile_definitions(test_pipeline PRIVATE TESSERA_PYTHON3="${SYSTEM_PYTHON3}")
endif()
