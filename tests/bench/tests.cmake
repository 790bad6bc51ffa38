include("${CMAKE_CURRENT_LIST_DIR}/torch_peer.cmake")
