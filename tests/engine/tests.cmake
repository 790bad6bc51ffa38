# The native engine on a CPU oneDNN must treat as AVX-512 without VNNI or BF16: bf16 and int8
# are refused with one line, fp32 still agrees with ONNX Runtime.
add_test(NAME engine.native_isa_avx512_core
         COMMAND test_engine --gtest_filter=NativeEngineIsa.*)
set_tests_properties(engine.native_isa_avx512_core PROPERTIES LABELS engine
                     ENVIRONMENT "ONEDNN_MAX_CPU_ISA=AVX512_CORE")
