# Strict warnings for the project's own targets.
add_library(distrib_warnings INTERFACE)
target_compile_options(distrib_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wshadow -Wnon-virtual-dtor
  -Wno-missing-field-initializers)
if(DISTRIB_WARNINGS_AS_ERRORS)
  target_compile_options(distrib_warnings INTERFACE -Werror)
endif()
