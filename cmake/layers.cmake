# Layers the build enforces (docs/architecture.md, "Layers").
#
# qwenmux_layer(NAME RANK r [DEPS layer...] [LIBS target...] [EXCLUDE regex...]) makes the static
# library qwenmux_NAME from every src/NAME/**/*.cc (a new file in a layer's folder is picked up
# without editing this), leaving out src/NAME/cuda/ (the CUDA spot in src/CMakeLists.txt builds
# those) and whatever matches an EXCLUDE regex.
#
# Each layer sees only its own headers and those of the layers it links (directly or through them):
# its include directory is ${QWENMUX_LAYER_INCLUDE_ROOT}/NAME, which holds one symlink NAME ->
# src/NAME, and it is PUBLIC, so it travels down the link graph and nowhere else. An #include of a
# layer that NAME does not link therefore fails to compile ("fatal error: orchestrator/...: No such
# file or directory"), whether or not the header exists under src/.
#
# RANK orders the layers: a layer may link only layers of a lower rank (layers of one rank, such as
# model, tokenizer and chat, are peers and may not use each other). A DEPS entry that breaks this,
# or names a layer not built in this configuration, stops the configure step with a message.

set(QWENMUX_LAYER_INCLUDE_ROOT ${CMAKE_BINARY_DIR}/layer_include)

function(qwenmux_layer name)
  cmake_parse_arguments(L "" "RANK" "DEPS;LIBS;EXCLUDE" ${ARGN})
  if(NOT DEFINED L_RANK)
    message(FATAL_ERROR "qwenmux_layer(${name}): RANK missing")
  endif()
  set_property(GLOBAL PROPERTY QWENMUX_LAYER_RANK_${name} ${L_RANK})

  set(dep_targets)
  foreach(dep IN LISTS L_DEPS)
    get_property(dep_rank GLOBAL PROPERTY QWENMUX_LAYER_RANK_${dep})
    if(NOT TARGET qwenmux_${dep})
      message(FATAL_ERROR "layer ${name} uses layer ${dep}, which this configuration does not build"
                          " (or which is declared after ${name} in src/CMakeLists.txt)")
    endif()
    if(NOT dep_rank LESS L_RANK)
      message(FATAL_ERROR "layer ${name} (rank ${L_RANK}) may not use layer ${dep} (rank ${dep_rank}):"
                          " dependencies point one way only (docs/architecture.md)")
    endif()
    list(APPEND dep_targets qwenmux_${dep})
  endforeach()

  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cc)
  list(FILTER sources EXCLUDE REGEX "/src/${name}/cuda/")
  foreach(rx IN LISTS L_EXCLUDE)
    list(FILTER sources EXCLUDE REGEX "${rx}")
  endforeach()

  add_library(qwenmux_${name} STATIC ${sources})
  add_library(qwenmux::${name} ALIAS qwenmux_${name})

  set(inc ${QWENMUX_LAYER_INCLUDE_ROOT}/${name})
  file(MAKE_DIRECTORY ${inc})
  file(REMOVE ${inc}/${name})  # the link only, in case the source tree moved
  file(CREATE_LINK ${PROJECT_SOURCE_DIR}/src/${name} ${inc}/${name} SYMBOLIC)
  target_include_directories(qwenmux_${name} PUBLIC ${inc})
  target_link_libraries(qwenmux_${name} PUBLIC ${dep_targets} ${L_LIBS})

  set_property(GLOBAL APPEND PROPERTY QWENMUX_LAYERS ${name})
endfunction()
