# Fails when docs/CONFIG.md differs from `ingrain config --doc` (the key table in io/config_keys.c).
execute_process(COMMAND ${INGRAIN} config --doc OUTPUT_VARIABLE generated RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ingrain config --doc failed with ${rc}")
endif()
file(READ ${DOC} committed)
if(NOT generated STREQUAL committed)
  message(FATAL_ERROR "docs/CONFIG.md is out of date with io/config_keys.c; regenerate it with\n"
                      "  build/ingrain config --doc > docs/CONFIG.md")
endif()
