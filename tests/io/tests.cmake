# test_io runs the system python3 (numpy) to write reference .npy files, and the tessera
# binary for `tessera synth`.
if(TARGET test_io)
  target_compile_definitions(test_io PRIVATE TESSERA_PYTHON3="${SYSTEM_PYTHON3}")
  add_dependencies(test_io tessera)
endif()
