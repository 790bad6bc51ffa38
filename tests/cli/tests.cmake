# test_cli runs the system python3 (numpy) to make float32 tiles with chosen values.
if(TARGET test_cli)
  target_compile_definitions(test_cli PRIVATE TESSERA_PYTHON3="${SYSTEM_PYTHON3}")
endif()
