# install.cmake - where `cmake --install` puts things, and the Debian package (cpack).
#
# The product has fixed system paths: the daemon's default configuration is
# /etc/gpsrelay/gpsrelay.conf and the unit runs /usr/sbin/gpsrelayd. So the prefix defaults
# to /usr (as a Debian package's does) and the configuration always goes to /etc/gpsrelay,
# whatever the prefix. `cmake --install build` therefore needs root; use DESTDIR= to stage.
# (The prefix's default is set at the top of CMakeLists.txt: the daemon is compiled with
# the folder of its cluster module, lib/gpsrelay under it.)
set(GR_CONF_DIR /etc/gpsrelay)

install(TARGETS gpsrelayd RUNTIME DESTINATION sbin)
install(TARGETS gpsrelayctl RUNTIME DESTINATION bin)
# Loaded by gpsrelayd only with cluster_nats (src/cluster/link.h).
install(TARGETS gpsrelay-cluster LIBRARY DESTINATION lib/gpsrelay)
if(TARGET gpsrelay-sim)
  install(TARGETS gpsrelay-sim RUNTIME DESTINATION bin)
endif()

install(FILES ${PROJECT_SOURCE_DIR}/config/gpsrelay.service DESTINATION lib/systemd/system)
# The example configuration is both the conffile and, untouched, documentation.
install(FILES ${PROJECT_SOURCE_DIR}/config/gpsrelay.conf.example DESTINATION ${GR_CONF_DIR}
        RENAME gpsrelay.conf)
install(FILES ${PROJECT_SOURCE_DIR}/config/gpsrelay.conf.example DESTINATION share/doc/gpsrelay)
# An empty mapping (header only), so `gpsrelayd -t` passes on a fresh install; the demo
# devices of config/devices.csv do not belong on a production machine.
file(WRITE ${PROJECT_BINARY_DIR}/devices.csv "device_id,agency_id,label,source_addr\n")
install(FILES ${PROJECT_BINARY_DIR}/devices.csv DESTINATION ${GR_CONF_DIR})
# The mapping's schema and the position archive's (docs/mapping.md, docs/archive.md), both
# applied by the operator with psql.
install(FILES ${PROJECT_SOURCE_DIR}/config/schema.sql ${PROJECT_SOURCE_DIR}/config/archive.sql
        DESTINATION share/gpsrelay)
# A cluster's other parts, as examples (docs/cluster.md): one NATS server of three, haproxy.
install(FILES ${PROJECT_SOURCE_DIR}/config/nats-server.conf ${PROJECT_SOURCE_DIR}/config/haproxy.cfg
        DESTINATION share/doc/gpsrelay/examples)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION share/doc/gpsrelay RENAME copyright)
# Man pages compressed as Debian ships them (gzip -n: no time stamp, reproducible).
foreach(page gpsrelayd.8 gpsrelay.conf.5)
  string(REGEX MATCH "[0-9]$" section ${page})
  set(gz ${PROJECT_BINARY_DIR}/man/${page}.gz)
  add_custom_command(OUTPUT ${gz}
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
                     COMMAND sh -c "gzip -9nc \"$0\" > \"$1\"" ${PROJECT_SOURCE_DIR}/man/${page} ${gz}
                     DEPENDS ${PROJECT_SOURCE_DIR}/man/${page} VERBATIM)
  list(APPEND GR_MAN_PAGES ${gz})
  install(FILES ${gz} DESTINATION share/man/man${section})
endforeach()
add_custom_target(gr_man_pages ALL DEPENDS ${GR_MAN_PAGES})

# ---- cpack -G DEB -------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gpsrelay)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "gpsrelay maintainers <gpsrelay@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "relay of live vehicle positions from modems to dispatch consoles")
set(CPACK_PACKAGE_DESCRIPTION
    "gpsrelayd accepts NMEA 0183, TAIP and JSON position reports over UDP and TCP and\
 pushes them per agency to dispatch consoles over WebSocket (Phoenix Channels v2).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# gpsrelay_0.1.0_amd64.deb: Debian's file name, so `apt-get install ./gpsrelay_*.deb` works.
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# dpkg-shlibdeps derives the linked libraries (libuv1, libwebsockets17, libjansson4, libpq5,
# libssl3, libc6; libasan8/libubsan1 too when built with GR_SANITIZE). libwebsockets loads
# its libuv event library with dlopen(), which no ELF header records: name it. procps has
# /bin/kill, the unit's ExecReload=.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libwebsockets-evlib-uv (>= 4.1.6), procps")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql, nats-server, haproxy")
# conffiles: dpkg keeps the operator's edits on upgrade. postinst creates the token key
# (see cmake/deb/postinst for why there), postrm removes it and the state on purge.
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/cmake/deb/conffiles ${PROJECT_SOURCE_DIR}/cmake/deb/postinst
    ${PROJECT_SOURCE_DIR}/cmake/deb/prerm ${PROJECT_SOURCE_DIR}/cmake/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
