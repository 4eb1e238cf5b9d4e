# evicorn_add_plugin: builds one evicorn plugin, a shared object the server
# loads from its plugins folder.
#
#   evicorn_add_plugin(NAME hello SOURCES hello.c [more.c ...]
#                      [LIBRARIES extra libs ...]
#                      [OUTPUT_DIRECTORY dir])
#   evicorn_add_plugin(hello SOURCES hello.c)      # the same
#
# The result is <dir>/<name>.so (no "lib" prefix), compiled as C17 with
# -fvisibility=hidden so that evicorn_plugin_entry is its only exported
# symbol, and linked with the SDK (evicorn::sdk). dir defaults to
# ${CMAKE_BINARY_DIR}/plugins. The target is named <name>.
include_guard(GLOBAL)

function(evicorn_add_plugin)
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "NAME;OUTPUT_DIRECTORY" "SOURCES;LIBRARIES")
  if(NOT ARG_NAME)
    list(POP_FRONT ARG_UNPARSED_ARGUMENTS ARG_NAME)
  endif()
  if(NOT ARG_NAME)
    message(FATAL_ERROR "evicorn_add_plugin: NAME is required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "evicorn_add_plugin(${ARG_NAME}): unexpected arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "evicorn_add_plugin(${ARG_NAME}): SOURCES is required")
  endif()
  if(NOT ARG_OUTPUT_DIRECTORY)
    set(ARG_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/plugins)
  endif()
  if(NOT TARGET evicorn::sdk)
    message(FATAL_ERROR "evicorn_add_plugin: no evicorn::sdk target; call find_package(evicorn) first")
  endif()

  add_library(${ARG_NAME} MODULE ${ARG_SOURCES})
  set_target_properties(${ARG_NAME} PROPERTIES
    PREFIX ""
    SUFFIX ".so"
    OUTPUT_NAME ${ARG_NAME}
    C_STANDARD 17
    C_STANDARD_REQUIRED ON
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON
    LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  target_link_libraries(${ARG_NAME} PRIVATE evicorn::sdk ${ARG_LIBRARIES})
endfunction()
