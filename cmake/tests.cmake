# One executable per test source. Labels: unit (tests/unit, also run under the
# sanitizers), golden (tests/golden, reference outputs), e2e (scripts driving
# the real binary). Tests find fixtures through compile-time paths.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
set(MOLD_FIXTURES ${CMAKE_SOURCE_DIR}/tests/fixtures)

add_library(mold_testutil STATIC ${CMAKE_SOURCE_DIR}/tests/testutil.c)
target_link_libraries(mold_testutil PUBLIC mold_core PkgConfig::CMOCKA)
target_include_directories(mold_testutil PUBLIC ${CMAKE_SOURCE_DIR}/tests)
target_compile_definitions(mold_testutil PUBLIC
  MOLD_TEST_FIXTURES="${MOLD_FIXTURES}"
  MOLD_TEST_BUILD_DIR="${CMAKE_BINARY_DIR}"
  MOLD_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
if(MOLD_HAVE_CUDA)
  set_target_properties(mold_testutil PROPERTIES CUDA_ARCHITECTURES "${MOLD_CUDA_ARCH}")
endif()

foreach(kind unit golden)
  file(GLOB MOLD_TESTS_${kind} CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/${kind}/test_*.c)
  foreach(src ${MOLD_TESTS_${kind}})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE mold_testutil)
    if(MOLD_HAVE_CUDA)
      set_target_properties(${name} PROPERTIES LINKER_LANGUAGE CUDA CUDA_ARCHITECTURES "${MOLD_CUDA_ARCH}")
    endif()
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS ${kind} TIMEOUT 600
      ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=STDOUT")
  endforeach()
endforeach()

# End-to-end tests: shell scripts that receive the mold binary and paths.
file(GLOB MOLD_E2E CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/test_*.sh)
foreach(src ${MOLD_E2E})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME e2e_${name} COMMAND bash ${src} $<TARGET_FILE:mold> ${MOLD_FIXTURES} ${CMAKE_BINARY_DIR})
  set_tests_properties(e2e_${name} PROPERTIES LABELS e2e TIMEOUT 900)
endforeach()
