# `tessera infer` under mpirun: byte-identical to one process, recovery after a SIGKILL'd
# rank, and ranks bound to the same CPUs splitting them. Both skip (exit 77) when built without MPI or when mpirun is missing.
foreach(_case identical kill split)
  add_test(NAME mpi_infer_${_case}
           COMMAND ${SYSTEM_PYTHON3} "${CMAKE_CURRENT_SOURCE_DIR}/infer/mpi_infer.py"
                   --case ${_case} --tessera "${TESSERA_BIN}" --mpi "${TESSERA_MPI}"
                   --mpirun "${MPIEXEC_EXECUTABLE}"
                   --workdir "${TESSERA_TEST_TMP}/mpi_infer_${_case}")
  set_tests_properties(mpi_infer_${_case} PROPERTIES LABELS infer TIMEOUT 180
                                                     SKIP_RETURN_CODE 77)
endforeach()
