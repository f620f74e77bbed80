# pnet_add_model(NAME SOURCE FILE.pnet [WEIGHTS W.safetensors] [CPU CPU] [OPTIONS pnetc options...])
#
# Compiles FILE.pnet with pnet::pnetc -c when the project builds, into NAME.o and NAME.h under
# ${CMAKE_CURRENT_BINARY_DIR}/pnet/NAME, and makes NAME a static library target: its include
# directory holds NAME.h, and it links pnet::pnetrt and OpenMP. pnetc's dependency file (-MD -MF)
# names the .pnet file, its imports and the weights, so editing an imported module recompiles.
# WEIGHTS embeds the weights (pnetc --weights); CPU is pnetc's --cpu (default: the building machine's
# CPU, which an older machine may lack; x86-64-v3 for a portable build); OPTIONS go to pnetc as given
# (-I DIR, --network NAME, -O2, ...). Relative paths (SOURCE, WEIGHTS, -I) are read from the current
# source directory.
include_guard(GLOBAL)

function(pnet_add_model name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "SOURCE;WEIGHTS;CPU" "OPTIONS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "pnet_add_model(${name}): unexpected arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_SOURCE)
    message(FATAL_ERROR "pnet_add_model(${name}): SOURCE FILE.pnet is required")
  endif()
  cmake_path(ABSOLUTE_PATH arg_SOURCE BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE OUTPUT_VARIABLE src)
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/pnet/${name}")
  set(obj "${dir}/${name}.o")
  set(hdr "${dir}/${name}.h")
  set(dep "${dir}/${name}.d")
  set(cmd -c "${src}" -o "${obj}" -MD -MF "${dep}")
  set(deps "${src}")
  if(arg_WEIGHTS)
    cmake_path(ABSOLUTE_PATH arg_WEIGHTS BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE OUTPUT_VARIABLE w)
    list(APPEND cmd --weights "${w}")
    list(APPEND deps "${w}")
  endif()
  if(arg_CPU)
    list(APPEND cmd --cpu "${arg_CPU}")
  endif()
  # pnetc runs in the binary directory: an import directory (-I DIR, -IDIR) is read from the source one.
  set(opts "")
  set(after_i FALSE)
  foreach(o IN LISTS arg_OPTIONS)
    if(after_i OR (o MATCHES "^-I." AND NOT o MATCHES "^-I/"))
      if(NOT after_i)
        string(SUBSTRING "${o}" 2 -1 o)
      endif()
      cmake_path(ABSOLUTE_PATH o BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
      if(NOT after_i)
        set(o "-I${o}")
      endif()
      set(after_i FALSE)
    elseif(o STREQUAL "-I")
      set(after_i TRUE)
    endif()
    list(APPEND opts "${o}")
  endforeach()
  file(MAKE_DIRECTORY "${dir}")
  add_custom_command(
    OUTPUT "${obj}" "${hdr}"
    COMMAND pnet::pnetc ${cmd} ${opts}
    DEPENDS ${deps} $<TARGET_FILE:pnet::pnetc>
    DEPFILE "${dep}"
    COMMENT "Compiling network ${name} from ${arg_SOURCE} with pnetc"
    VERBATIM COMMAND_EXPAND_LISTS)
  # A static library of the one object; the header is a source so that it is made before users compile.
  add_library(${name} STATIC "${obj}" "${hdr}")
  set_target_properties(${name} PROPERTIES LINKER_LANGUAGE C)
  target_include_directories(${name} PUBLIC "${dir}")
  target_link_libraries(${name} PUBLIC pnet::pnetrt OpenMP::OpenMP_C)
endfunction()
