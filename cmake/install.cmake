# install.cmake - where `cmake --install` puts things.
install(TARGETS gpsrelayd RUNTIME DESTINATION sbin)
install(TARGETS gpsrelayctl RUNTIME DESTINATION bin)
