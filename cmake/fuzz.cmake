# libFuzzer targets (clang only): one per tests/fuzz/fuzz_*.c, linked against
# the core library built with -fsanitize=fuzzer-no-link,address,undefined.
file(GLOB MOLD_FUZZERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
target_compile_options(mold_core PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
foreach(src ${MOLD_FUZZERS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE mold_core)
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
endforeach()
# The fuzz build instruments mold_core for libFuzzer; only the fuzzers link the
# libFuzzer runtime, so the mold executable is not part of this build.
set_target_properties(mold PROPERTIES EXCLUDE_FROM_ALL TRUE)
