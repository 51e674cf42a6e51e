include(CMakePackageConfigHelpers)
install(TARGETS distrib distrib_c EXPORT distribTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/libdistrib/include/distrib
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT distribTargets NAMESPACE distrib::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/distrib)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/distribConfig.cmake.in
  ${PROJECT_BINARY_DIR}/distribConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/distrib)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/distribConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/distribConfig.cmake ${PROJECT_BINARY_DIR}/distribConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/distrib)
