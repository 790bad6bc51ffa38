#include "tessera/geo/geotiff.h"

#include <cpl_conv.h>
#include <cpl_string.h>
#include <fmt/format.h>
#include <gdal_priv.h>
#include <ogr_spatialref.h>

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "tessera/common/error.h"
#include "tessera/geo/gdal_session.h"
#include "tessera/io/atomic_file.h"

namespace tessera {
namespace {

// Sets the CRS and north-up transform of `geometry` on `dataset`.
void place_dataset(GDALDataset& dataset, const TileGeometry& geometry, const std::string& path) {
  OGRSpatialReference crs;
  if (crs.importFromWkt(geometry.crs_wkt.c_str()) != OGRERR_NONE)
    throw Error(fmt::format("{}: the CRS of {} is not valid WKT", path, geometry.source));
  std::array<double, 6> transform = {
      geometry.origin_x, geometry.pixel_size, 0, geometry.origin_y, 0, -geometry.pixel_size};
  dataset.SetGeoTransform(transform.data());
  dataset.SetSpatialRef(&crs);
}

// code x scale per value, pixel by pixel (the view's order); NaN for a pixel of scale 0.
std::vector<float> dequantise(const TileEmbeddingsView& view) {
  const int64_t pixels = static_cast<int64_t>(view.height) * view.width;
  const int64_t dims = view.dims;
  std::vector<float> values(static_cast<size_t>(pixels * dims));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t p = 0; p < pixels; ++p) {
    const float scale = view.scales[p];
    const std::int8_t* codes = view.codes + p * dims;
    float* out = values.data() + p * dims;
    if (scale == 0) {
      std::fill(out, out + dims, nan);
      continue;
    }
    for (int64_t d = 0; d < dims; ++d) out[d] = static_cast<float>(codes[d]) * scale;
  }
  return values;
}

// An in-memory dataset over `values` (pixel-interleaved, not copied), one band per embedding
// value, with the geometry, band names, nodata and tags.
GDALDatasetUniquePtr memory_dataset(std::vector<float>& values, const TileGeometry& geometry,
                                    const TileEmbeddingsView& view, const GeoTiffTags& tags,
                                    const std::string& path) {
  GDALDriver* mem = GetGDALDriverManager()->GetDriverByName("MEM");
  GDALDatasetUniquePtr dataset(
      mem ? mem->Create("", view.width, view.height, 0, GDT_Float32, nullptr) : nullptr);
  if (!dataset)
    throw Error(path + ": GDAL cannot make an in-memory dataset (" + gdal_error_text() + ")");
  const size_t value_bytes = sizeof(float);
  for (int d = 0; d < view.dims; ++d) {
    char pointer[64] = {};
    CPLPrintPointer(pointer, values.data() + d, sizeof pointer - 1);
    CPLStringList options;
    options.SetNameValue("DATAPOINTER", pointer);
    options.SetNameValue("PIXELOFFSET", std::to_string(value_bytes * view.dims).c_str());
    options.SetNameValue("LINEOFFSET",
                         std::to_string(value_bytes * view.dims * view.width).c_str());
    if (dataset->AddBand(GDT_Float32, options.List()) != CE_None)
      throw Error(path + ": GDAL cannot add a band (" + gdal_error_text() + ")");
    GDALRasterBand* band = dataset->GetRasterBand(d + 1);
    band->SetDescription(fmt::format("Tessera_Band_{}", d).c_str());
    band->SetNoDataValue(std::numeric_limits<double>::quiet_NaN());
  }
  place_dataset(*dataset, geometry, path);
  if (!tags.dataset_version.empty())
    dataset->SetMetadataItem("TESSERA_DATASET_VERSION", tags.dataset_version.c_str());
  if (tags.year != 0) dataset->SetMetadataItem("TESSERA_YEAR", std::to_string(tags.year).c_str());
  if (tags.cell) {
    dataset->SetMetadataItem("TESSERA_TILE_LAT", fmt::format("{:.2f}", tags.cell->lat).c_str());
    dataset->SetMetadataItem("TESSERA_TILE_LON", fmt::format("{:.2f}", tags.cell->lon).c_str());
  }
  if (!tags.description.empty())
    dataset->SetMetadataItem("TESSERA_DESCRIPTION", tags.description.c_str());
  return dataset;
}

// GDAL's COG writer: 256 x 256 tiles, ZSTD, overviews by
// nearest neighbour (every overview pixel is one pixel's embedding), BigTIFF when needed.
CPLStringList cog_options() {
  CPLStringList options;
  options.SetNameValue("BLOCKSIZE", "256");
  options.SetNameValue("COMPRESS", "ZSTD");
  options.SetNameValue("RESAMPLING", "NEAREST");
  options.SetNameValue("OVERVIEWS", "AUTO");
  options.SetNameValue("BIGTIFF", "IF_SAFER");
  options.SetNameValue("NUM_THREADS", "ALL_CPUS");
  return options;
}

}  // namespace

std::vector<std::string> geotiff_temp_paths(const std::string& path) {
  return {path + ".partial", path + ".partial.ovr.tmp"};
}

void write_embeddings_geotiff(const std::string& path, const TileGeometry& geometry,
                              const TileEmbeddingsView& view, const GeoTiffTags& tags) {
  if (view.height != geometry.height || view.width != geometry.width) {
    throw Error(fmt::format("{}: embeddings of {} x {} pixels on a grid of {} x {} ({})", path,
                            view.height, view.width, geometry.height, geometry.width,
                            geometry.source));
  }
  ensure_gdal_registered();
  const QuietGdalErrors quiet;
  AtomicFile file(path);  // "<path>.partial", made new (never through a link)
  std::vector<float> values = dequantise(view);
  const GDALDatasetUniquePtr source = memory_dataset(values, geometry, view, tags, path);
  GDALDriver* cog = GetGDALDriverManager()->GetDriverByName("COG");
  if (cog == nullptr) throw Error(path + ": this GDAL has no COG driver");
  GDALDatasetUniquePtr written(cog->CreateCopy(file.temp_path().c_str(), source.get(), FALSE,
                                               cog_options().List(), nullptr, nullptr));
  if (!written)
    throw Error(fmt::format("{}: cannot write the GeoTIFF ({})", path, gdal_error_text()));
  CPLErrorReset();
  written.reset();  // flushes and closes GDAL's own descriptor
  if (CPLGetLastErrorType() >= CE_Failure)
    throw Error(fmt::format("{}: cannot write the GeoTIFF ({})", path, gdal_error_text()));
  file.commit();
}

void write_roi_tiff(const std::string& path, const TileGeometry& geometry) {
  ensure_gdal_registered();
  const QuietGdalErrors quiet;
  GDALDriver* gtiff = GetGDALDriverManager()->GetDriverByName("GTiff");
  CPLStringList options;
  options.SetNameValue("COMPRESS", "DEFLATE");
  GDALDatasetUniquePtr dataset(gtiff ? gtiff->Create(path.c_str(), geometry.width, geometry.height,
                                                     1, GDT_Byte, options.List())
                                     : nullptr);
  if (!dataset) throw Error(fmt::format("{}: cannot write ({})", path, gdal_error_text()));
  place_dataset(*dataset, geometry, path);
  std::vector<std::uint8_t> inside(static_cast<size_t>(geometry.width) * geometry.height, 1);
  if (dataset->GetRasterBand(1)->RasterIO(GF_Write, 0, 0, geometry.width, geometry.height,
                                          inside.data(), geometry.width, geometry.height, GDT_Byte,
                                          0, 0, nullptr) != CE_None) {
    throw Error(fmt::format("{}: cannot write ({})", path, gdal_error_text()));
  }
  CPLErrorReset();
  dataset.reset();
  if (CPLGetLastErrorType() >= CE_Failure)
    throw Error(fmt::format("{}: cannot write ({})", path, gdal_error_text()));
}

}  // namespace tessera
