# Warnings for project code only (torch and gRPC headers are SYSTEM includes).
set(LONGENC_WARNINGS -Wall -Wextra -Wno-unused-parameter)

# longenc_library(name SOURCES ... DEPS ...): a static library with project warnings.
function(longenc_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC "${PROJECT_SOURCE_DIR}")
  target_compile_options(${name} PRIVATE ${LONGENC_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# longenc_test(name SOURCES ... DEPS ... [LABELS ...]): a GoogleTest binary registered with ctest.
# Tests run from the source tree so that relative paths to testdata and models/ work.
function(longenc_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${PROJECT_BINARY_DIR}/tests")
  target_compile_options(${name} PRIVATE ${LONGENC_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}")
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}"
    ENVIRONMENT "LONGENC_BUILD_DIR=${PROJECT_BINARY_DIR};LONGENC_MODEL_DIR=${LONGENC_DEFAULT_MODEL_DIR}")
endfunction()

# longenc_use_tcmalloc(target): with LONGENC_TCMALLOC, links tcmalloc so it replaces malloc for
# the whole process, LibTorch included (--no-as-needed: nothing calls it by name).
function(longenc_use_tcmalloc target)
  if(LONGENC_TCMALLOC)
    # One token, so CMake cannot reorder the state switch away from the library.
    target_link_libraries(${target} PRIVATE
      "-Wl,--push-state,--no-as-needed,${LONGENC_TCMALLOC_LIBRARY},--pop-state")
  endif()
endfunction()
